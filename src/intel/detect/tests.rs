//! Generated workloads with injected truth: every injected anomaly is found
//! with the right subject and level, the quiet control raises nothing, and
//! observing the same events again raises nothing new.

use super::*;
use crate::event::{Event, Provenance, Severity, Status};
use crate::testkit::EventGen;

/// The test's random numbers (the generator's PRNG).
struct Rng(EventGen);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(EventGen::new(seed))
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// 2026-11-30T00:00:00Z.
const DAY0: i64 = 1_796_083_200_000_000;

fn stored(seq: u64, ev: Event) -> StoredEvent {
    StoredEvent {
        seq,
        received_at: ev.timestamp.unwrap_or(DAY0),
        event: ev,
        provenance: Some(Provenance::cli()),
    }
}

fn ev(t: i64, action: &str, user: &str, ip: &str, status: Status) -> Event {
    Event {
        timestamp: Some(t),
        action: action.into(),
        user_id: Some(user.into()),
        ip: Some(ip.into()),
        tenant: Some("acme".into()),
        status: Some(status),
        severity: Some(Severity::Info),
        ..Event::default()
    }
}

/// Three quiet working days: 20 users, each from their own two IPs (both in
/// use from their first events on: an established user), between 08:00 and
/// 17:59 UTC, about 2 % failures spread evenly, a login now and then.
fn quiet_days(rng: &mut Rng) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for day in 0..3 {
        for i in 0..6_000 {
            let warm_up = day == 0 && i < 40;
            let u = if warm_up {
                i as u64 % 20
            } else {
                rng.below(20)
            };
            let second = if warm_up {
                i as i64
            } else {
                60 + rng.below(10 * 3600 - 60) as i64
            };
            let t = DAY0 + day * 24 * HOUR + 8 * HOUR + second * 1_000_000;
            let ip = format!(
                "10.0.{u}.{}",
                if warm_up { i as u64 / 20 } else { rng.below(2) }
            );
            let action = ["view", "update", "create", "login", "export"][i % 5];
            let status = if rng.below(50) == 0 {
                Status::Failure
            } else {
                Status::Success
            };
            let action = if action == "login" && status == Status::Failure {
                "view"
            } else {
                action
            };
            out.push(ev(t, action, &format!("u{u}"), &ip, status));
        }
    }
    out.sort_by_key(|e| e.timestamp);
    out
}

fn run(d: &mut Detectors, events: &[Event], first_seq: u64) -> Vec<Finding> {
    events
        .iter()
        .enumerate()
        .flat_map(|(i, e)| d.observe(&stored(first_seq + i as u64, e.clone())))
        .collect()
}

#[test]
fn the_quiet_control_raises_nothing() {
    let mut rng = Rng::new(7);
    let mut d = Detectors::new(Thresholds::default(), Limits::default());
    let found = run(&mut d, &quiet_days(&mut rng), 1);
    assert!(found.is_empty(), "{:#?}", &found[..found.len().min(3)]);
}

#[test]
fn every_injected_anomaly_is_found_once_with_its_subject_and_level() {
    let mut rng = Rng::new(8);
    let mut d = Detectors::new(Thresholds::default(), Limits::default());
    let quiet = quiet_days(&mut rng);
    assert!(run(&mut d, &quiet, 1).is_empty());
    let day3 = DAY0 + 3 * 24 * HOUR;
    let at = |h: i64, m: i64| day3 + h * HOUR + m * MINUTE;
    let mut inject = Vec::new();
    // A failed-login burst: 8 in 3 minutes for u3 from an attacker's address.
    for i in 0..8 {
        inject.push(ev(
            at(10, 1) + i * 20_000_000,
            "login_failed",
            "u3",
            "203.0.113.9",
            Status::Failure,
        ));
    }
    // An error spike on checkout: 60 failures among 80 events in 6 minutes.
    for i in 0..80 {
        let status = if i % 4 == 0 {
            Status::Success
        } else {
            Status::Failure
        };
        inject.push(ev(
            at(11, 2) + i * 4_000_000,
            "checkout",
            &format!("u{}", i % 20),
            &format!("10.0.{}.0", i % 20),
            status,
        ));
    }
    // A new IP for u5, a privilege change by u6, u7 at 03:00.
    inject.push(ev(
        at(12, 0),
        "view",
        "u5",
        "198.51.100.77",
        Status::Success,
    ));
    inject.push(ev(
        at(13, 0),
        "role_granted",
        "u6",
        "10.0.6.0",
        Status::Success,
    ));
    inject.push(ev(at(3, 0), "view", "u7", "10.0.7.0", Status::Success));
    // API abuse: 700 events of u8 within one minute.
    for i in 0..700 {
        inject.push(ev(
            at(14, 0) + i * 50_000,
            "view",
            "u8",
            "10.0.8.0",
            Status::Success,
        ));
    }
    inject.sort_by_key(|e| e.timestamp);
    let found = run(&mut d, &inject, 100_000);
    let has = |kind: &str, subject: (&str, &str), level: Level| {
        found
            .iter()
            .filter(|f| {
                f.kind == kind
                    && f.subject.kind == subject.0
                    && f.subject.id == subject.1
                    && f.level == level
            })
            .count()
    };
    assert_eq!(
        has("failed_login_burst", ("user", "u3"), Level::Medium),
        1,
        "{found:#?}"
    );
    assert_eq!(
        has("failed_login_burst", ("ip", "203.0.113.9"), Level::Medium),
        1
    );
    assert_eq!(
        has("error_rate_spike", ("action", "checkout"), Level::Medium),
        1,
        "{found:#?}"
    );
    assert_eq!(has("new_ip", ("user", "u5"), Level::Low), 1);
    assert_eq!(has("privilege_change", ("user", "u6"), Level::Medium), 1);
    assert_eq!(has("unusual_hour", ("user", "u7"), Level::Low), 1);
    assert_eq!(has("api_abuse", ("user", "u8"), Level::Medium), 1);
    // Nothing about anyone or anything else (the spike also shows on the
    // system and the tenant, the burst's attacker address is new for u3).
    for f in &found {
        let expected = matches!(
            (f.kind, f.subject.id.as_str()),
            ("failed_login_burst", "u3" | "203.0.113.9")
                | ("error_rate_spike", "checkout" | "all" | "acme")
                | ("new_ip", "u5" | "u3")
                | ("privilege_change", "u6")
                | ("unusual_hour", "u7")
                | ("api_abuse", "u8")
        );
        assert!(expected, "unexpected {f:#?}");
    }
    // A restart: fresh detectors that remember the findings in the log, and
    // replay the recent events to warm up, raise nothing twice.
    let mut again = Detectors::new(Thresholds::default(), Limits::default());
    for f in &found {
        again.remember(f.key());
    }
    let replayed = run(&mut again, &quiet, 1);
    assert!(replayed.is_empty());
    assert!(run(&mut again, &inject, 100_000).is_empty());
    // Every finding's event is valid and reserved.
    for f in &found {
        let e = f.to_event();
        assert_eq!(e.category.as_deref(), Some(super::super::finding::CATEGORY));
    }
}

#[test]
fn stele_own_events_are_never_observed_and_memory_is_bounded() {
    let mut d = Detectors::new(
        Thresholds::default(),
        Limits {
            users: 50,
            ips: 50,
            scopes: 20,
            emitted: 20,
        },
    );
    let mut own = stored(
        1,
        ev(DAY0, "login_failed", "x", "10.9.9.9", Status::Failure),
    );
    own.provenance = Some(Provenance::stele());
    for _ in 0..100 {
        assert!(d.observe(&own).is_empty());
    }
    assert_eq!(d.tracked(), [0, 0, 0, 0]);
    // A batch import: 10,000 events of one actor in one request are one
    // request, not abuse.
    let one_request: Vec<Finding> = (0..10_000u64)
        .flat_map(|i| {
            let mut s = stored(
                100 + i,
                ev(
                    DAY0 + i as i64,
                    "import",
                    "bulk",
                    "10.8.8.8",
                    Status::Success,
                ),
            );
            s.received_at = DAY0;
            d.observe(&s)
        })
        .collect();
    assert!(
        one_request.iter().all(|f| f.kind != "api_abuse"),
        "{one_request:#?}"
    );
    for i in 0..5_000u64 {
        let e = ev(
            DAY0 + i as i64,
            &format!("a{i}"),
            &format!("u{i}"),
            &format!("10.{}.{}.1", i / 250, i % 250),
            Status::Failure,
        );
        d.observe(&stored(i + 2, e));
    }
    let [users, ips, scopes, emitted] = d.tracked();
    assert!(
        users <= 50 && ips <= 50 && scopes <= 20 && emitted <= 20,
        "{:?}",
        d.tracked()
    );
}

/// The same user and address failing in two tenants in one window: a burst
/// in each tenant (the deduplication key holds the tenant), and remembering
/// one tenant's findings does not silence the other's.
#[test]
fn the_same_subject_in_two_tenants_is_two_findings() {
    let failures = |tenant: &str| -> Vec<Event> {
        (0..5)
            .map(|i| Event {
                tenant: Some(tenant.into()),
                ..ev(
                    DAY0 + i * 1_000_000,
                    "login",
                    "admin",
                    "10.9.9.9",
                    Status::Failure,
                )
            })
            .collect()
    };
    let mut d = Detectors::new(Thresholds::default(), Limits::default());
    let mut found = Vec::new();
    for (i, e) in failures("acme")
        .into_iter()
        .chain(failures("globex"))
        .enumerate()
    {
        found.extend(d.observe(&stored(i as u64 + 1, e)));
    }
    let mut keys: Vec<_> = found
        .iter()
        .map(|f| (f.tenant.clone().unwrap(), f.subject.kind, f.kind))
        .collect();
    keys.sort();
    let k = |t: &str, s| (t.to_owned(), s, "failed_login_burst");
    assert_eq!(
        keys,
        [
            k("acme", "ip"),
            k("acme", "user"),
            k("globex", "ip"),
            k("globex", "user")
        ]
    );
    // A restart that read back acme's findings still raises globex's.
    let mut again = Detectors::new(Thresholds::default(), Limits::default());
    for f in found.iter().filter(|f| f.tenant.as_deref() == Some("acme")) {
        again.remember(f.key());
    }
    let raised: Vec<Finding> = failures("globex")
        .into_iter()
        .enumerate()
        .flat_map(|(i, e)| again.observe(&stored(i as u64 + 1, e)))
        .collect();
    assert_eq!(raised.len(), 2, "{raised:#?}");
    assert!(raised.iter().all(|f| f.tenant.as_deref() == Some("globex")));
}

/// The query of every finding about a tenant's user or address filters on
/// that tenant (URL-encoded), so it lists that tenant's events only; a
/// subject without a tenant's query has no tenant filter (none can say "no
/// tenant").
#[test]
fn the_query_of_a_tenants_subject_names_its_tenant() {
    let th = Thresholds {
        login_burst_count: 2,
        new_ip_min_history: 1,
        hour_min_history: 2,
        hour_share: 0.5,
        abuse_per_minute: 2,
        ..Thresholds::default()
    };
    let events = |tenant: Option<&str>| -> Vec<Event> {
        let at = |h: i64, s: i64| DAY0 + h * HOUR + s * 1_000_000;
        let mut out = vec![
            // History at 09:00 from one address, then 03:00 from another:
            // a new IP and an unusual hour.
            ev(at(9, 0), "view", "eve", "10.0.0.1", Status::Success),
            ev(at(9, 10), "view", "eve", "10.0.0.1", Status::Success),
            ev(at(3, 0), "view", "eve", "10.0.0.2", Status::Success),
            // A burst (user and address), and requests: abuse.
            ev(at(12, 0), "login", "eve", "10.0.0.3", Status::Failure),
            ev(at(12, 1), "login", "eve", "10.0.0.3", Status::Failure),
            // A privilege change.
            ev(
                at(13, 0),
                "role_granted",
                "eve",
                "10.0.0.1",
                Status::Success,
            ),
        ];
        // Requests of an address without a user: abuse of an IP.
        for s in 0..2 {
            out.push(Event {
                user_id: None,
                ..ev(at(14, s), "fetch", "-", "10.0.0.4", Status::Success)
            });
        }
        for e in &mut out {
            e.tenant = tenant.map(str::to_owned);
        }
        out
    };
    let mut d = Detectors::new(th, Limits::default());
    let found = run(&mut d, &events(Some("acme/eu")), 1);
    let mut kinds: Vec<(&str, &str)> = found.iter().map(|f| (f.kind, f.subject.kind)).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            ("api_abuse", "ip"),
            ("api_abuse", "user"),
            ("failed_login_burst", "ip"),
            ("failed_login_burst", "user"),
            ("new_ip", "user"),
            ("privilege_change", "user"),
            ("unusual_hour", "user"),
        ]
    );
    for f in &found {
        assert_eq!(f.tenant.as_deref(), Some("acme/eu"));
        assert!(f.query.starts_with("tenant=acme%2Feu&"), "{f:#?}");
    }
    // The same activity without a tenant: the same findings, another subject.
    let found = run(&mut d, &events(None), 100);
    let mut again: Vec<(&str, &str)> = found.iter().map(|f| (f.kind, f.subject.kind)).collect();
    again.sort();
    again.dedup();
    assert_eq!(again, kinds);
    for f in &found {
        assert_eq!(f.tenant, None);
        assert!(!f.query.contains("tenant="), "{f:#?}");
    }
}

/// A user whose every event comes from an address (and a country) new to
/// them raised `new_ip` once a day for as long as they were active: 30
/// findings in 30 days that said nothing (the benchmark's workload stored one
/// such finding for every five events). Once their churn shows they roam, a
/// new address or country of theirs is ordinary; a user with usual addresses
/// still raises one for a new address, and a roaming user who settles is
/// watched again.
#[test]
fn a_roaming_user_raises_new_ip_while_learning_only_and_a_settled_one_still_does() {
    let mut events = Vec::new();
    let mut n = 0u32;
    let mut next_ip = || {
        n += 1;
        format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255)
    };
    for day in 0..30 {
        for i in 0..50 {
            let t = DAY0 + day * 24 * HOUR + 9 * HOUR + i * 60_000_000;
            events.push(ev(t, "view", "rover", &next_ip(), Status::Success));
            // The same address, a new country every time.
            let mut flyer = ev(t + 2, "view", "flyer", "10.201.0.1", Status::Success);
            flyer.metadata = Some(format!("{{\"country\":\"C{}\"}}", day * 50 + i));
            events.push(flyer);
            let usual = ["10.200.0.1", "10.200.0.2"][i as usize % 2];
            events.push(ev(t + 1, "view", "desk", usual, Status::Success));
        }
    }
    // Day 29: failed logins of the settled user from 30 addresses (failed
    // events teach neither the addresses nor the churn). Day 30: the settled
    // user from a new address; the roaming user settles on one address for a
    // morning, then acts from another.
    for i in 0..30 {
        let t = DAY0 + 29 * 24 * HOUR + 12 * HOUR + i * 60_000_000;
        events.push(ev(
            t,
            "login",
            "desk",
            &format!("198.18.0.{i}"),
            Status::Failure,
        ));
    }
    let last = DAY0 + 30 * 24 * HOUR + 9 * HOUR;
    events.push(ev(last, "view", "desk", "192.0.2.99", Status::Success));
    for i in 0..40 {
        events.push(ev(
            last + i,
            "view",
            "rover",
            "198.51.100.1",
            Status::Success,
        ));
    }
    events.push(ev(
        last + HOUR,
        "view",
        "rover",
        "198.51.100.2",
        Status::Success,
    ));

    let count = |found: &[Finding], user: &str, what: &str| {
        found
            .iter()
            .filter(|f| {
                f.kind == "new_ip" && f.subject.id == user && f.evidence["new"]["type"] == what
            })
            .count()
    };
    let mut d = Detectors::new(Thresholds::default(), Limits::default());
    let found = run(&mut d, &events, 1);
    // Day 0: once the history reaches 5 events and before the churn reaches
    // 50 % (11 new values in a row), one finding (one a user a day); day 30,
    // settled again: one more for the address.
    let days = |user: &str| -> Vec<i64> {
        found
            .iter()
            .filter(|f| f.subject.id == user)
            .map(|f| (f.since - DAY0) / (24 * HOUR))
            .collect()
    };
    assert_eq!(count(&found, "rover", "ip"), 2, "{found:#?}");
    assert_eq!(days("rover"), [0, 30], "{found:#?}");
    assert_eq!(count(&found, "flyer", "country"), 1, "{found:#?}");
    assert_eq!(days("flyer"), [0], "{found:#?}");
    // The failed logins: one medium finding on day 29 (the first new
    // address), and day 30's new address is still remarkable.
    let desk: Vec<&Finding> = found
        .iter()
        .filter(|f| f.kind == "new_ip" && f.subject.id == "desk")
        .collect();
    assert_eq!(desk.len(), 2, "{found:#?}");
    assert_eq!(desk[0].level, Level::Medium);
    assert_eq!(desk[1].evidence["new"]["value"], "192.0.2.99");
    assert_eq!(desk[1].evidence["churn_percent"].as_f64(), Some(0.0));

    // Roaming off (0): every day of the roaming user is a finding again.
    let off = Thresholds {
        new_ip_roaming_percent: 0.0,
        ..Thresholds::default()
    };
    let found = run(&mut Detectors::new(off, Limits::default()), &events, 1);
    assert_eq!(count(&found, "rover", "ip"), 31, "{found:#?}");
    assert_eq!(count(&found, "flyer", "country"), 30);
}
