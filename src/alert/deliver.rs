//! Delivering one notification to one webhook: the JSON body, its
//! HMAC-SHA256 signature, the HTTP POST (blocking `ureq`, run by the caller
//! on the blocking pool) and the pause before the next attempt.
//!
//! The signature: `X-Stele-Signature: sha256=<hex>`, the HMAC-SHA256 with
//! the webhook's secret of `<X-Stele-Timestamp> "." <body bytes>`, the
//! timestamp being the attempt's Unix time in seconds. A receiver recomputes
//! it over the raw body, compares in constant time and refuses old
//! timestamps (replays). `X-Stele-Delivery` carries the notification's id,
//! the same on every attempt and after a restart, for receivers that drop
//! duplicates.

use super::eval::{Detail, Notification};
use super::rules::{Format, Webhook};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::Duration;

/// Largest body sent; a finding whose JSON view would make it larger is
/// left out (`"finding": null, "finding_omitted": true`; its link remains).
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// The first pause after a failed attempt; it doubles up to the webhook's
/// `backoff_max_secs`.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// Bytes of an error answer kept for the log line.
const ANSWER_BYTES_MAX: u64 = 512;

/// The signature header's value for `body` sent at `timestamp` (seconds).
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The pause after `failures` failed attempts of one notification.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    BACKOFF_FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(max)
}

fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// The relative URL listing what fired `n`: the rule's filter over its
/// window (the listing's `since`/`until` are event times, which for events
/// posted without a `timestamp` are their `received_at`), or the finding, in
/// its tenant when it has one (ids are unique per tenant: the same finding id
/// in two tenants, say the same user's burst, is otherwise a 409).
pub fn link(n: &Notification) -> String {
    match &n.detail {
        Detail::Threshold {
            start, end, params, ..
        } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in params {
                q.append_pair(k, v);
            }
            q.append_pair("since", &rfc3339(*start));
            q.append_pair("until", &rfc3339(*end));
            format!("/v1/events?{}", q.finish())
        }
        Detail::Finding { id, finding, .. } => {
            let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            match finding.get("tenant").and_then(Value::as_str) {
                Some(t) => {
                    let t: String = form_urlencoded::byte_serialize(t.as_bytes()).collect();
                    format!("/v1/events/{id}?tenant={t}")
                }
                None => format!("/v1/events/{id}"),
            }
        }
    }
}

/// One sentence for people (and the whole of a `slack` body).
pub fn text(n: &Notification) -> String {
    match &n.detail {
        Detail::Threshold {
            start,
            end,
            count,
            params,
            ..
        } => {
            let filter = if params.is_empty() {
                "any event".to_string()
            } else {
                let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                q.join("&")
            };
            format!(
                "Stele alert {}: {count} events matching {filter} between {} and {} (see {}).",
                n.rule,
                rfc3339(*start),
                rfc3339(*end),
                link(n)
            )
        }
        Detail::Finding {
            kind,
            severity,
            summary,
            ..
        } => format!(
            "Stele alert {}: {severity} finding {kind}: {} (see {}).",
            n.rule,
            summary.as_deref().unwrap_or("no summary"),
            link(n)
        ),
    }
}

/// The JSON body of `n` in `format`.
pub fn body(n: &Notification, format: Format) -> Vec<u8> {
    if format == Format::Slack {
        return json!({ "text": text(n) }).to_string().into_bytes();
    }
    let mut v = json!({
        "id": n.id(),
        "rule": n.rule,
        "fired_at": rfc3339(n.fired_at),
        "seq": n.seq,
        "events_url": link(n),
        "text": text(n),
    });
    let m = v.as_object_mut().expect("an object");
    match &n.detail {
        Detail::Threshold {
            start,
            end,
            count,
            threshold,
            samples,
            ..
        } => {
            m.insert("kind".into(), json!("threshold"));
            m.insert(
                "window".into(),
                json!({"start": rfc3339(*start), "end": rfc3339(*end), "secs": (end - start) / 1_000_000}),
            );
            m.insert("count".into(), json!(count));
            m.insert("threshold".into(), json!(threshold));
            m.insert("sample_event_ids".into(), json!(samples));
        }
        Detail::Finding { finding, id, .. } => {
            m.insert("kind".into(), json!("finding"));
            m.insert("sample_event_ids".into(), json!([id]));
            m.insert("finding".into(), finding.clone());
        }
    }
    let bytes = v.to_string().into_bytes();
    if bytes.len() <= BODY_BYTES_MAX {
        return bytes;
    }
    let m = v.as_object_mut().expect("an object");
    m.insert("finding".into(), Value::Null);
    m.insert("finding_omitted".into(), Value::Bool(true));
    v.to_string().into_bytes()
}

/// One attempt: POSTs `body` to `hook`, signed at `timestamp` (Unix
/// seconds). Blocking; call it on the blocking pool.
///
/// # Errors
/// A sentence: the transport's error, or the status and the start of the
/// answer of anything but a 2xx.
pub fn post(hook: &Webhook, id: &str, body: &[u8], timestamp: u64) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(hook.timeout))
        .max_redirects(0)
        .user_agent(concat!("stele/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let ts = timestamp.to_string();
    let mut req = agent
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("x-stele-delivery", id)
        .header("x-stele-timestamp", &ts);
    if let Some(secret) = &hook.secret {
        req = req.header("x-stele-signature", &signature(secret, &ts, body));
    }
    let mut resp = req.send(body).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let answer = resp
        .body_mut()
        .with_config()
        .limit(ANSWER_BYTES_MAX)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    Err(format!("HTTP {status}: {}", answer.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(summary: &str) -> Notification {
        Notification {
            rule: "r".into(),
            webhook: "w".into(),
            seq: 7,
            fired_at: 1_795_478_340_000_000,
            detail: Detail::Finding {
                finding: json!({"id": "f1", "metadata": {"pad": summary}}),
                id: "f/1".into(),
                kind: "new_ip".into(),
                severity: "high".into(),
                summary: Some(summary.into()),
            },
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2, with the message split at the dot.
        let sig = signature(b"Jefe", "what do ya want ", b" for nothing?");
        assert_ne!(sig, signature(b"Jefe", "what do ya want", b" for nothing?"));
        let sig2 = signature(b"Jefe", "what do ya want for nothing?", b"");
        // "x" "." "" is not "x": the dot is signed.
        assert_ne!(sig, sig2);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want . for nothing?");
        assert_eq!(
            sig,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        let mut rfc = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        rfc.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(rfc.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let max = Duration::from_secs(5);
        let got: Vec<u128> = (1..=6).map(|f| backoff(f, max).as_millis()).collect();
        assert_eq!(got, vec![500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff(u32::MAX, max), max);
    }

    #[test]
    fn a_finding_links_to_itself_in_its_tenant() {
        let mut n = finding("x");
        assert_eq!(link(&n), "/v1/events/f%2F1");
        if let Detail::Finding { finding, .. } = &mut n.detail {
            finding["tenant"] = json!("acme corp");
        }
        assert_eq!(link(&n), "/v1/events/f%2F1?tenant=acme+corp");
    }

    #[test]
    fn bodies_carry_the_finding_or_leave_an_oversized_one_out() {
        let small: Value = serde_json::from_slice(&body(&finding("x"), Format::Stele)).unwrap();
        assert_eq!(small["kind"], "finding");
        assert_eq!(small["id"], "r:7");
        assert_eq!(small["finding"]["id"], "f1");
        assert_eq!(small["events_url"], "/v1/events/f%2F1");
        assert_eq!(small["fired_at"], "2026-11-23T23:59:00.000000Z");
        let big = finding(&"x".repeat(BODY_BYTES_MAX));
        let b = body(&big, Format::Stele);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["finding"], Value::Null);
        assert_eq!(v["finding_omitted"], true);
        let slack: Value = serde_json::from_slice(&body(&finding("x"), Format::Slack)).unwrap();
        assert_eq!(slack.as_object().unwrap().len(), 1, "{slack}");
        assert!(slack["text"]
            .as_str()
            .unwrap()
            .contains("high finding new_ip: x"));
    }

    #[test]
    fn a_threshold_links_to_its_filter_over_its_window() {
        let n = Notification {
            rule: "r".into(),
            webhook: "w".into(),
            seq: 9,
            fired_at: 0,
            detail: Detail::Threshold {
                start: 0,
                end: 600_000_000,
                count: 3,
                threshold: 3,
                params: vec![
                    ("action".into(), "login".into()),
                    ("q".into(), "a b".into()),
                ],
                samples: vec!["e1".into()],
            },
        };
        assert_eq!(
            link(&n),
            "/v1/events?action=login&q=a+b&since=1970-01-01T00%3A00%3A00.000000Z\
             &until=1970-01-01T00%3A10%3A00.000000Z"
        );
        let v: Value = serde_json::from_slice(&body(&n, Format::Stele)).unwrap();
        assert_eq!(v["window"]["secs"], 600);
        assert_eq!(
            (v["count"].as_u64(), v["threshold"].as_u64()),
            (Some(3), Some(3))
        );
    }
}
