//! The audit log audits itself: every read, search, export, stream and
//! admin request made with an API key becomes an event of category
//! `audit_access` in the log it read.
//!
//! Invariants:
//! 1. An audit event names the key by its configured id, never by its token.
//! 2. Exports and streams are recorded durably (`phase = "start"`) before
//!    their first byte leaves, and again when they end (`phase = "end"`,
//!    with the number of events sent). Other requests are recorded after
//!    their answer (`phase = "request"`), batched by one task that commits
//!    at most every [`FLUSH_DELAY`]: a crash can lose the records of the
//!    queries of that last moment, never of an export or a stream.
//! 3. Audit events carry no tenant: only keys scoped to all tenants see them.
//! 4. They are stored with `ingested_by = "stele"`, under a category clients
//!    cannot post (`audit_access`), so none can be forged over the API.

use crate::auth::Key;
use crate::event::{self, Event};
use crate::log::Log;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The category of audit events (reserved: clients cannot post it, see
/// [`event::is_reserved_kind`]).
pub const CATEGORY: &str = event::AUDIT_ACCESS_CATEGORY;
/// Records queued before requests wait for the writer.
const QUEUE: usize = 4096;
/// Records appended per group commit.
const BATCH: usize = 1000;
/// Longest wait for more records before a group commit: the window of
/// query records a crash can lose.
pub const FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(50);
/// Longest parameter value copied into a record (longer ones are cut).
const PARAM_BYTES_MAX: usize = 1024;

/// Counters of the audit writer.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Audit events made durable.
    pub recorded: AtomicU64,
    /// Audit events that could not be appended (logged).
    pub failed: AtomicU64,
}

/// Appends audit events: queued ([`Auditor::record`]) or at once
/// ([`Auditor::record_durable`]).
pub struct Auditor {
    tx: tokio::sync::mpsc::Sender<Event>,
    log: Arc<Log>,
    /// Its counters.
    pub stats: Arc<AuditStats>,
}

impl Auditor {
    /// Starts the writer task (on the current tokio runtime). It ends when
    /// the auditor is dropped, after appending what was queued.
    pub fn start(log: Arc<Log>) -> Auditor {
        Auditor::start_guarded(log, ())
    }

    /// [`Auditor::start`], the writer task holding `guard` until it ends
    /// (whoever waits for the last log handle waits for its last appends).
    pub fn start_guarded(log: Arc<Log>, guard: impl Send + 'static) -> Auditor {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(QUEUE);
        let stats = Arc::new(AuditStats::default());
        let (log2, stats2) = (log.clone(), stats.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                // Let the records of the reads that follow gather for a
                // moment: one group commit per FLUSH_DELAY at most, instead
                // of one per read (each read would otherwise cost an fsync).
                let deadline = tokio::time::Instant::now() + FLUSH_DELAY;
                while batch.len() < BATCH {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(ev)) => batch.push(ev),
                        Ok(None) | Err(_) => break,
                    }
                }
                // Failures are counted and logged by `append`.
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                let _ = append(&log2, &stats2, full).await;
            }
        });
        Auditor { tx, log, stats }
    }

    /// Queues a record (waits only when [`QUEUE`] records are pending).
    pub async fn record(&self, ev: Event) {
        if self.tx.send(ev).await.is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues a record without waiting (from `Drop`, or code that cannot
    /// await): when the queue is full, a task waits for room.
    pub fn record_detached(&self, ev: Event) {
        use tokio::sync::mpsc::error::TrySendError;
        match self.tx.try_send(ev) {
            Ok(()) => {}
            Err(TrySendError::Full(ev)) => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let tx = self.tx.clone();
                    rt.spawn(async move {
                        let _ = tx.send(ev).await;
                    });
                }
                Err(_) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(TrySendError::Closed(_)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Appends a record and waits until it is durable.
    pub async fn record_durable(&self, ev: Event) -> Result<(), String> {
        append(&self.log, &self.stats, vec![ev]).await
    }
}

async fn append(log: &Log, stats: &AuditStats, events: Vec<Event>) -> Result<(), String> {
    let n = events.len() as u64;
    match log.append_async(events, &event::Provenance::stele()).await {
        Ok(_) => {
            stats.recorded.fetch_add(n, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            stats.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!("Could not record {n} audit events: {e}.");
            Err(e.to_string())
        }
    }
}

/// Who asked what: everything an audit record says about a request.
pub struct Access {
    /// The key used.
    pub key: Arc<Key>,
    /// The route name (`list`, `search`, …, see `server::route_name`).
    pub route: &'static str,
    /// The HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The query parameters, as given.
    pub params: Vec<(String, String)>,
    /// The client's address.
    pub ip: IpAddr,
}

/// The step of a request a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A request answered at once.
    Request,
    /// An export or stream about to send its first byte.
    Start,
    /// An export or stream that ended.
    End,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Start => "start",
            Phase::End => "end",
        }
    }
}

impl Access {
    /// The audit event of this request. `result_count`: events returned
    /// (segments or holds on admin listings; `None` where that does not
    /// apply); `extra`: more metadata members.
    pub fn event(
        &self,
        phase: Phase,
        http_status: u16,
        result_count: Option<u64>,
        extra: Map<String, Value>,
    ) -> Option<Event> {
        let mut params = Map::new();
        for (k, v) in &self.params {
            params.insert(cut(k), Value::String(cut(v)));
        }
        let mut metadata = json!({
            "key_id": self.key.id,
            "key_tenants": self.key.scope.to_json(),
            "method": self.method,
            "path": cut(&self.path),
            "params": params,
            "http_status": http_status,
            "result_count": result_count,
            "phase": phase.as_str(),
        });
        if let Value::Object(m) = &mut metadata {
            m.extend(extra);
        }
        let counted = match result_count {
            Some(n) => format!(", {n} results"),
            None => String::new(),
        };
        let v = json!({
            "action": self.route,
            "category": CATEGORY,
            "actor": self.key.id,
            "source": "integration",
            "status": if http_status < 400 { "success" } else { "failure" },
            "severity": if http_status == 403 { "warning" } else { "info" },
            "ip": self.ip.to_string(),
            "description": format!(
                "key {} {} {} ({}): {http_status}{counted}",
                self.key.id, self.method, cut(&self.path), phase.as_str()
            ),
            "metadata": metadata,
        });
        match event::parse_stele_event(&v, event::new_event_id) {
            Ok(ev) => Some(ev),
            Err(errs) => {
                // Cannot happen with the cuts above; never fail a read for it.
                tracing::error!("An audit record did not validate: {errs:?}.");
                None
            }
        }
    }
}

/// `s` cut to at most [`PARAM_BYTES_MAX`] bytes (on a char boundary).
fn cut(s: &str) -> String {
    if s.len() <= PARAM_BYTES_MAX {
        return s.to_string();
    }
    let mut end = PARAM_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthConfig, KeyConfig, Keyring, Role};

    #[test]
    fn records_name_the_key_never_the_token_and_validate() {
        let token = crate::auth::generate_token().unwrap();
        let cfg = AuthConfig {
            keys: vec![KeyConfig {
                id: "auditor-1".into(),
                hash: crate::auth::hash_line(&token),
                roles: vec![Role::Read],
                tenants: vec!["acme".into()],
                rate_per_sec: None,
                rate: None,
                burst: None,
                streams_max: None,
            }],
            ..AuthConfig::default()
        };
        let ring = Keyring::new(&cfg, None);
        let key = ring
            .authenticate(Some(format!("Bearer {token}").as_bytes()))
            .unwrap();
        let a = Access {
            key,
            route: "search",
            method: "GET".into(),
            path: "/v1/search".into(),
            params: vec![
                ("q".into(), "error AND disk".into()),
                ("long".into(), "é".repeat(2000)),
            ],
            ip: "127.0.0.1".parse().unwrap(),
        };
        let ev = a.event(Phase::Request, 200, Some(7), Map::new()).unwrap();
        assert_eq!(ev.category.as_deref(), Some(CATEGORY));
        assert_eq!(ev.action, "search");
        assert_eq!(ev.actor.as_deref(), Some("auditor-1"));
        assert_eq!(ev.tenant, None);
        let m: Value = serde_json::from_str(ev.metadata.as_deref().unwrap()).unwrap();
        assert_eq!(m["params"]["q"], "error AND disk");
        assert_eq!(m["result_count"], 7);
        assert_eq!(m["key_tenants"], json!(["acme"]));
        assert!(m["params"]["long"].as_str().unwrap().len() <= PARAM_BYTES_MAX + 3);
        let mut all = Vec::new();
        event::encode_event(&ev, &mut all);
        let text = String::from_utf8_lossy(&all);
        assert!(
            !text.contains(&token[6..]),
            "the token leaked into the record"
        );
        let denied = a.event(Phase::Request, 403, None, Map::new()).unwrap();
        assert_eq!(denied.status, Some(event::Status::Failure));
    }
}
