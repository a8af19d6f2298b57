//! Event JSON validation over arbitrary bytes: never panics; an accepted
//! event's JSON view validates again to the same event, and its on-disk
//! encoding decodes to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stele::event::{decode_stored, encode_event, encode_stored_prefix, parse_event, StoredEvent};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(ev) = parse_event(&value, || "fuzz-id".to_string()) else {
        return;
    };
    // The JSON view (what queries answer) is a valid event, and the same one.
    let view = serde_json::to_value(&ev).expect("an event serializes");
    let again = parse_event(&view, || unreachable!("the view carries the id"))
        .unwrap_or_else(|e| panic!("the JSON view of an accepted event is invalid: {e:?}\n{view}"));
    assert_eq!(again, ev, "the JSON view does not round-trip");
    // The stored encoding round-trips.
    let mut bytes = Vec::new();
    encode_stored_prefix(7, 1_700_000_000_000_000, &mut bytes);
    encode_event(&ev, &mut bytes);
    let stored = decode_stored(&bytes).expect("an encoded event decodes");
    assert_eq!(
        stored,
        StoredEvent {
            seq: 7,
            received_at: 1_700_000_000_000_000,
            event: ev
        }
    );
});
