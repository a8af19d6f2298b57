//! The state the run's threads and tasks share: the seeded days and their holds, the
//! counters, every acknowledged client id with its seq, the first retained seq seen,
//! the daemon's pid and RSS maxima, and the failures ([`Run::fail`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::watch;

use crate::common::lock;
use crate::opts::Opts;
use crate::FAILURES_KEPT;

/// A seeded past day and the hold on it.
pub struct SeedDay {
    pub day: chrono::NaiveDate,
    pub hold: String,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Client-id numbers `first_n..first_n + count`.
    pub first_n: u64,
    pub count: u64,
    /// Set just before `DELETE /v1/holds/NAME` is sent (it may take effect unanswered).
    pub lift_sent: AtomicBool,
    /// Set once the daemon answered 204 (or 404: an earlier unanswered attempt did it).
    pub lifted_at: Mutex<Option<Instant>>,
    /// When the first retained seq was first seen past this day.
    pub dropped_seen: Mutex<Option<Instant>>,
}

#[derive(Default)]
pub struct Counters {
    pub ingest_requests: AtomicU64,
    pub events_acked_http: AtomicU64,
    pub retried: AtomicU64,
    pub replayed: AtomicU64,
    pub partial_batches: AtomicU64,
    pub abandoned: AtomicU64,
    pub ingest_errors: AtomicU64,
    pub q_list: AtomicU64,
    pub q_search: AtomicU64,
    pub q_stats: AtomicU64,
    pub q_get: AtomicU64,
    pub q_get_seeded: AtomicU64,
    pub q_get_dropped_404: AtomicU64,
    pub q_empty: AtomicU64,
    pub q_errors: AtomicU64,
    pub stream_events: AtomicU64,
    /// Stele's own records (findings, `audit_access`) among `stream_events`.
    pub stream_own_events: AtomicU64,
    pub stream_connections: AtomicU64,
    pub stream_errors: AtomicU64,
    pub retention_polls: AtomicU64,
}

pub struct Run {
    pub o: Opts,
    pub prefix: String,
    pub started: Instant,
    pub addr: watch::Receiver<Option<SocketAddr>>,
    pub stop: AtomicBool,
    pub next_n: AtomicU64,
    /// Seq of each acknowledged client-id number (0: not acknowledged).
    pub acked: Mutex<Vec<u64>>,
    /// (n, seq) of recent HTTP acknowledgements, for get-by-id.
    pub recent: Mutex<VecDeque<(u64, u64)>>,
    pub days: Vec<SeedDay>,
    /// Highest first retained seq seen.
    pub first_seq: AtomicU64,
    /// Highest indexed seq seen (`/readyz`).
    pub indexed_seq: AtomicU64,
    /// The running daemon's pid (0 while none).
    pub pid: AtomicU32,
    pub rss_max_kib: AtomicU64,
    pub rss_anon_max_kib: AtomicU64,
    pub c: Counters,
    pub failures: Mutex<(u64, Vec<String>)>,
}

impl Run {
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn note(&self, msg: &str) {
        eprintln!("soak: [{:7.1} s] {msg}", self.secs());
    }

    /// Records a failure (the run will exit non-zero) and says so at once.
    pub fn fail(&self, msg: String) {
        self.note(&format!("FAILURE: {msg}"));
        let mut f = lock(&self.failures);
        f.0 += 1;
        if f.1.len() < FAILURES_KEPT {
            f.1.push(format!("[{:.1} s] {msg}", self.secs()));
        }
    }

    pub fn id(&self, n: u64) -> String {
        format!("{}{n}", self.prefix)
    }

    pub fn n_of(&self, id: &str) -> Option<u64> {
        id.strip_prefix(&self.prefix)?.parse().ok()
    }

    /// Records `seq` as the acknowledged seq of client id `n`.
    pub fn ack(&self, n: u64, seq: u64) {
        let mut a = lock(&self.acked);
        let i = n as usize;
        if a.len() <= i {
            a.resize(i + 1, 0);
        }
        if a[i] != 0 && a[i] != seq {
            let was = a[i];
            drop(a);
            self.fail(format!(
                "id {} was acknowledged at seq {was}, then at seq {seq}",
                self.id(n)
            ));
            return;
        }
        a[i] = seq;
    }
}
