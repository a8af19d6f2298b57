use super::*;
use serde_json::{json, Value};

#[test]
fn the_stored_prefix_never_exceeds_its_bound() {
    for (seq, received_at) in [(0, 0), (u64::MAX, i64::MIN), (u64::MAX, i64::MAX), (1, -1)] {
        let mut out = Vec::new();
        encode_stored_prefix(seq, received_at, &mut out);
        assert!(
            out.len() <= STORED_PREFIX_BYTES_MAX,
            "{seq} {received_at}: {}",
            out.len()
        );
    }
}

/// The bytes format version 3 appends to an event whose version 3 fields are all
/// absent: one `None` tag for each of the eight fields.
const V3_ABSENT_TAGS: usize = 8;

/// A version 3 event's fields, all set.
fn with_v3_fields(mut ev: Event) -> Event {
    ev.process_name = Some("nightly_export".into());
    ev.process_id = Some("run-1".into());
    ev.batch_id = Some("batch-1".into());
    ev.phase = Some(Phase::Finished);
    ev.items_total = Some(ITEMS_MAX);
    ev.items_processed = Some(9);
    ev.items_failed = Some(0);
    ev.risk_rules = Some(vec!["failed_auth".into(); RISK_RULES_MAX]);
    ev
}

#[test]
fn stored_prefix_plus_event_plus_provenance_equals_the_tuple_encoding() {
    let by = [
        Provenance::cli(),
        Provenance::stele(),
        Provenance::loopback("::1".parse().unwrap()),
        Provenance::key("k.1_-", "2001:db8::7".parse().unwrap()),
    ];
    for ev in [
        ok(full()),
        ok(minimal()),
        Event::default(),
        with_v3_fields(ok(full())),
    ] {
        for (i, (seq, received_at)) in [(0, 0), (1, -1), (u64::MAX, i64::MIN), (300, i64::MAX)]
            .into_iter()
            .enumerate()
        {
            let by = &by[i];
            // Version 3: (seq, received_at, event, provenance).
            let v3 = bincode::encode_to_vec((seq, received_at, &ev, by), bincode_config()).unwrap();
            let mut parts = Vec::new();
            encode_stored_prefix(seq, received_at, &mut parts);
            let prefix_len = parts.len();
            encode_event(&ev, &mut parts);
            assert_eq!(parts.len() - prefix_len, encoded_len(&ev));
            encode_provenance(by, &mut parts);
            assert_eq!(parts, v3);
            let stored = StoredEvent {
                seq,
                received_at,
                event: ev.clone(),
                provenance: Some(by.clone()),
            };
            assert_eq!(decode_stored(&v3, 3).unwrap(), stored);
            assert_eq!(decode_stored_seq(&v3), Ok(seq));
            // Versions 4 to 7 changed the segment, not the payload.
            for version in 4..=7 {
                assert_eq!(decode_stored(&v3, version).unwrap(), stored);
            }
            assert!(decode_stored(&v3, 8).unwrap_err().contains("version 8"));
            if ev.risk_rules.is_some() {
                // Not expressible in the old layout.
                continue;
            }
            // Versions 1 and 2 hold the event without the version 3 fields (the
            // layout `LegacyEvent` decodes): version 3's bytes less the absent tags.
            let mut v1 = Vec::new();
            encode_stored_prefix(seq, received_at, &mut v1);
            encode_event(&ev, &mut v1);
            v1.truncate(v1.len() - V3_ABSENT_TAGS);
            let mut v2 = v1.clone();
            encode_provenance(by, &mut v2);
            let stored_v1 = StoredEvent {
                provenance: None,
                ..stored.clone()
            };
            assert_eq!(decode_stored(&v1, 1).unwrap(), stored_v1);
            assert_eq!(decode_stored(&v2, 2).unwrap(), stored);
            // Each version consumes its payload exactly: another version's bytes
            // never decode as it.
            assert!(decode_stored(&v1, 2).is_err());
            assert!(decode_stored(&v1, 3).is_err());
            assert!(decode_stored(&v2, 1).unwrap_err().contains("trailing"));
            assert!(decode_stored(&v2, 3).is_err());
            assert!(decode_stored(&v3, 2).is_err());
        }
    }
}

#[test]
fn provenance_bytes_are_two_strings_after_the_event() {
    // ingested_by: varint length ++ UTF-8; client_addr: Option tag ++ string.
    let mut out = Vec::new();
    encode_provenance(&Provenance::cli(), &mut out);
    assert_eq!(out, b"\x03cli\x00");
    out.clear();
    encode_provenance(
        &Provenance::key("k", "127.0.0.1".parse().unwrap()),
        &mut out,
    );
    assert_eq!(out, b"\x01k\x01\x09127.0.0.1");
    assert!(Provenance::cli().check().is_ok());
    let long = Provenance {
        ingested_by: "k".repeat(INGESTED_BY_BYTES_MAX + 1),
        client_addr: None,
    };
    assert!(long.check().is_err());
}

/// A valid event whose in-memory claims while decoding exceed its encoded size:
/// nearly `EVENT_BYTES_MAX` of text before many tiny changes.
#[test]
fn largest_valid_events_decode() {
    let big = "v".repeat(CHANGE_VALUE_BYTES_MAX - 2);
    let mut changes: Vec<Value> = (0..5)
        .map(|i| json!({"field": format!("f{i}"), "old": big, "new": big}))
        .collect();
    changes.extend((5..CHANGES_COUNT_MAX).map(|_| json!({"field": "a"})));
    let mut v = with("changes", json!(changes));
    v["description"] = json!("d".repeat(DESCRIPTION_BYTES_MAX));
    v["entity_name"] = json!("n".repeat(ENTITY_NAME_BYTES_MAX));
    v["user_agent"] = json!("u".repeat(USER_AGENT_BYTES_MAX));
    let mut ev = ok(v.clone());
    // Grow the largest change value until the event is just under the limit.
    let room = EVENT_BYTES_MAX - encoded_len(&ev);
    let grown = "v".repeat(CHANGE_VALUE_BYTES_MAX - 2 - 16 + room.min(16));
    v["changes"][4]["new"] = json!(grown);
    v["metadata"] = json!({ "k": "m".repeat(EVENT_BYTES_MAX - encoded_len(&ev) - 48) });
    ev = ok(v);
    let len = encoded_len(&ev);
    assert!(
        len > EVENT_BYTES_MAX - 64 && len <= EVENT_BYTES_MAX,
        "{len}"
    );
    let mut bytes = Vec::new();
    encode_stored_prefix(u64::MAX, i64::MIN, &mut bytes);
    encode_event(&ev, &mut bytes);
    encode_provenance(
        &Provenance::key(
            &"k".repeat(INGESTED_BY_BYTES_MAX),
            "1111:2222:3333:4444:5555:6666:7777:8888".parse().unwrap(),
        ),
        &mut bytes,
    );
    match decode_stored(&bytes, 3) {
        Ok(stored) => assert!(stored.event == ev, "decoded event differs"),
        Err(err) => panic!("{err}"),
    }
}

#[test]
fn decode_stored_rejects_trailing_truncated_and_garbage() {
    let mut bytes = Vec::new();
    encode_stored_prefix(1, 2, &mut bytes);
    encode_event(&ok(full()), &mut bytes);
    let mut v2 = bytes.clone();
    encode_provenance(&Provenance::cli(), &mut v2);
    let mut longer = v2.clone();
    longer.push(0);
    assert!(decode_stored(&longer, 3).unwrap_err().contains("trailing"));
    for cut in 0..v2.len() {
        assert!(decode_stored(&v2[..cut], 3).is_err());
    }
    // Version 1: the event in the old layout, without the version 3 fields.
    let v1 = &bytes[..bytes.len() - V3_ABSENT_TAGS];
    assert!(decode_stored(v1, 1).is_ok());
    let mut longer = v1.to_vec();
    longer.push(0);
    assert!(decode_stored(&longer, 1).unwrap_err().contains("trailing"));
    assert_eq!(decode_stored_seq(&longer), Ok(1));
    assert!(decode_stored_seq(&[]).is_err());
    assert!(decode_stored_seq(&[253, 1]).is_err());
    for cut in 0..v1.len() {
        assert!(decode_stored(&v1[..cut], 1).is_err());
    }
    // A huge length prefix must fail on the limit, not allocate.
    let mut huge = Vec::new();
    encode_stored_prefix(1, 2, &mut huge);
    huge.push(253); // varint marker: a u64 follows
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(decode_stored(&huge, 1).is_err());
    assert!(decode_stored(&huge, 2).is_err());
    assert!(decode_stored(&huge, 3).is_err());
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for len in 0..200 {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        let _ = decode_stored(&junk, 1);
        let _ = decode_stored(&junk, 2);
        let _ = decode_stored(&junk, 3);
    }
}
