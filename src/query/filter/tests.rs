use super::*;
use crate::event::{Kind, FIELDS};
use crate::query::PARAMS;

#[test]
fn every_filter_row_of_the_field_table_has_a_slot_and_nothing_else_does() {
    for spec in FIELDS {
        let mut f = Filter::default();
        match spec.filter {
            None => {
                assert!(f.eq_slot(spec.name).is_none(), "{}", spec.name);
                assert!(!PARAMS.contains(&spec.name), "{}", spec.name);
            }
            Some(param) => {
                assert!(PARAMS.contains(&param), "{param}");
                let want = match f.eq_slot(param) {
                    None => panic!("{param} has no slot in Filter"),
                    Some(EqSlot::Text(slot)) => {
                        assert!(
                            matches!(spec.kind, Kind::Identifier | Kind::Ip | Kind::Labels),
                            "{param}"
                        );
                        *slot = Some("x-1".into());
                        "x-1"
                    }
                    Some(EqSlot::Source(slot)) => {
                        *slot = Some(Source::System);
                        Source::System.as_str()
                    }
                    Some(EqSlot::Status(slot)) => {
                        *slot = Some(Status::Failure);
                        Status::Failure.as_str()
                    }
                    Some(EqSlot::Severity(slot)) => {
                        *slot = Some(Severity::Warning);
                        Severity::Warning.as_str()
                    }
                    Some(EqSlot::Phase(slot)) => {
                        *slot = Some(Phase::Progress);
                        Phase::Progress.as_str()
                    }
                    Some(EqSlot::Range(slot)) => {
                        assert_eq!(spec.kind, Kind::Integer, "{param}");
                        let r = NumRange { lo: 3, hi: 9 };
                        *slot = Some(r);
                        assert_eq!(f.range_value(param), Some(r), "{param}");
                        ""
                    }
                };
                if spec.kind != Kind::Integer {
                    assert_eq!(f.eq_value(param), Some(want), "{param}");
                }
                // Exactly this parameter is set.
                for other in FIELDS.iter().filter_map(|s| s.filter) {
                    let set = f.eq_value(other).is_some() || f.range_value(other).is_some();
                    assert_eq!(set, other == param, "{other}");
                }
            }
        }
    }
}

/// One filter per field of `Filter`, each with only that field set (the
/// destructuring in `fingerprint_into` makes a new field fail to compile until
/// it is encoded; add it here too).
fn one_field_each() -> Vec<Filter> {
    let s = |v: &str| Some(v.to_owned());
    let d = Filter::default;
    vec![
        Filter {
            tenant: s("a"),
            ..d()
        },
        Filter {
            tenants: Some(vec![]),
            ..d()
        },
        Filter {
            tenants: Some(vec!["a".into()]),
            ..d()
        },
        Filter {
            tenants: Some(vec!["a".into(), "b".into()]),
            ..d()
        },
        Filter {
            tenants: Some(vec!["ab".into()]),
            ..d()
        },
        Filter {
            action: s("a"),
            ..d()
        },
        Filter {
            user_name: s("a"),
            ..d()
        },
        Filter {
            process_name: s("a"),
            ..d()
        },
        Filter {
            process_id: s("a"),
            ..d()
        },
        Filter {
            batch_id: s("a"),
            ..d()
        },
        Filter {
            phase: Some(Phase::Started),
            ..d()
        },
        Filter {
            risk_rules: s("a"),
            ..d()
        },
        Filter {
            stele_records: OwnRecords::Include,
            ..d()
        },
        Filter {
            stele_records: OwnRecords::Only,
            ..d()
        },
        Filter {
            risk_score: Some(NumRange { lo: 0, hi: 30 }),
            ..d()
        },
        Filter {
            risk_score: Some(NumRange { lo: 0, hi: 31 }),
            ..d()
        },
        Filter {
            duration_ms: Some(NumRange { lo: 0, hi: 30 }),
            ..d()
        },
        Filter {
            category: s("a"),
            ..d()
        },
        Filter {
            source: Some(Source::System),
            ..d()
        },
        Filter {
            status: Some(Status::Failure),
            ..d()
        },
        Filter {
            severity: Some(Severity::Warning),
            ..d()
        },
        Filter {
            min_severity: Some(Severity::Warning),
            ..d()
        },
        Filter {
            entity_type: s("a"),
            ..d()
        },
        Filter {
            entity_id: s("a"),
            ..d()
        },
        Filter {
            user_id: s("a"),
            ..d()
        },
        Filter {
            session_id: s("a"),
            ..d()
        },
        Filter {
            correlation_id: s("a"),
            ..d()
        },
        Filter { ip: s("a"), ..d() },
        Filter {
            actor: s("a"),
            ..d()
        },
        Filter {
            ingested_by: s("a"),
            ..d()
        },
        Filter {
            since: Some(0),
            ..d()
        },
        Filter {
            until: Some(0),
            ..d()
        },
        Filter {
            text: s("a"),
            ..d()
        },
        Filter { text: s(""), ..d() },
    ]
}

fn encoding(f: &Filter) -> Vec<u8> {
    let mut out = Vec::new();
    f.fingerprint_into(&mut out);
    out
}

#[test]
fn the_fingerprint_encoding_distinguishes_every_filter_field() {
    let mut all = vec![encoding(&Filter::default())];
    all.extend(one_field_each().iter().map(encoding));
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "two filters share an encoding");
    // Values cannot slide between fields: "ab" in one is not "a" + "b" in two.
    let split = Filter {
        action: Some("a".into()),
        category: Some("b".into()),
        ..Filter::default()
    };
    let joined = Filter {
        action: Some("ab".into()),
        ..Filter::default()
    };
    assert_ne!(encoding(&split), encoding(&joined));
}

#[test]
fn the_fingerprint_encoding_is_explicit_not_debug_output() {
    // Spelled out byte for byte: a change to `Debug` (or to a field's Rust
    // name) cannot change it, only a deliberate change of the encoding.
    let f = Filter {
        tenant: Some("acme".into()),
        severity: Some(Severity::Error),
        since: Some(1),
        ..Filter::default()
    };
    let mut want = Vec::new();
    let field = |want: &mut Vec<u8>, name: &str| {
        want.extend_from_slice(&(name.len() as u32).to_be_bytes());
        want.extend_from_slice(name.as_bytes());
    };
    field(&mut want, "tenant");
    want.push(1);
    field(&mut want, "acme");
    field(&mut want, "tenants");
    want.push(0);
    for name in ["action", "category", "source", "status"] {
        field(&mut want, name);
        want.push(0);
    }
    field(&mut want, "severity");
    want.push(1);
    field(&mut want, "error");
    for name in [
        "min_severity",
        "entity_type",
        "entity_id",
        "user_id",
        "session_id",
        "correlation_id",
        "user_name",
        "ip",
        "actor",
        "ingested_by",
        "risk_score",
        "duration_ms",
        "process_name",
        "process_id",
        "batch_id",
        "phase",
        "risk_rules",
    ] {
        field(&mut want, name);
        want.push(0);
    }
    field(&mut want, "since");
    want.push(1);
    want.extend_from_slice(&1i64.to_be_bytes());
    field(&mut want, "until");
    want.push(0);
    field(&mut want, "text");
    want.push(0);
    field(&mut want, "stele_records");
    want.push(1);
    field(&mut want, "exclude");
    assert_eq!(encoding(&f), want);
    assert!(!String::from_utf8_lossy(&want).contains("Some"));
}
