//! The summary: the run's figures and failures as text (stdout, or stderr with
//! `--json`) and as one JSON object.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use crate::checks::Final;
use crate::common::lock;
use crate::daemon::DaemonLog;
use crate::run::Paths;
use crate::state::Run;
use crate::supervise::Supervised;

pub struct Summary {
    pub json: Value,
    pub text: String,
    pub failures: Vec<String>,
}

impl Summary {
    pub fn print(&self, json: bool) {
        if json {
            eprint!("{}", self.text);
            println!("{}", self.json);
        } else {
            print!("{}", self.text);
        }
    }
}

pub fn summarize(
    run: &Run,
    sup: &Supervised,
    fin: &Final,
    dlog: &DaemonLog,
    paths: &Paths,
    load_secs: f64,
) -> Summary {
    let c = &run.c;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    if fin.dropped_logged != fin.dropped_acked {
        run.fail(format!(
            "retention.log records {} dropped events, {} acknowledged events are below the \
             first retained seq",
            fin.dropped_logged, fin.dropped_acked
        ));
    }
    let failures = lock(&run.failures).clone();
    let acked_total = lock(&run.acked).iter().filter(|s| **s != 0).count() as u64;
    let queries = g(&c.q_list) + g(&c.q_search) + g(&c.q_stats) + g(&c.q_get) + g(&c.q_get_seeded);
    let starts = &sup.start_secs;
    let restart_max = starts.iter().skip(1).copied().fold(0.0, f64::max);
    let restart_mean = if starts.len() > 1 {
        starts[1..].iter().sum::<f64>() / (starts.len() - 1) as f64
    } else {
        0.0
    };
    let lifted = run
        .days
        .iter()
        .filter(|d| lock(&d.lifted_at).is_some())
        .count();
    let drop_lat: Vec<f64> = run
        .days
        .iter()
        .filter_map(|d| {
            let l = (*lock(&d.lifted_at))?;
            let s = (*lock(&d.dropped_seen))?;
            Some(s.saturating_duration_since(l).as_secs_f64())
        })
        .collect();
    let rss = g(&run.rss_max_kib) as f64 / 1024.0;
    let anon = g(&run.rss_anon_max_kib) as f64 / 1024.0;
    let http_acked = g(&c.events_acked_http);
    let mut json = json!({
        "passed": failures.1.is_empty(),
        "load_secs": load_secs,
        "events_acked": acked_total,
        "events_acked_http": http_acked,
        "events_acked_per_sec": http_acked as f64 / load_secs.max(1e-9),
        "events_seeded": run.days.iter().map(|d| d.count).sum::<u64>(),
        "events_dropped_by_retention": fin.dropped_acked,
        "events_stored_unacked": fin.stored_unacked,
        "ingest_requests": g(&c.ingest_requests),
        "ingest_retried": g(&c.retried),
        "ingest_replayed": g(&c.replayed),
        "ingest_partial_batches": g(&c.partial_batches),
        "ingest_abandoned": g(&c.abandoned),
        "ingest_transport_errors": g(&c.ingest_errors),
        "crashes": sup.kills,
        "unexpected_exits": sup.unexpected_exits,
        "restart_secs_mean": restart_mean,
        "restart_secs_max": restart_max,
        "queries": queries,
        "queries_by_kind": {
            "list": g(&c.q_list), "search": g(&c.q_search), "stats": g(&c.q_stats),
            "get_by_id": g(&c.q_get), "get_seeded": g(&c.q_get_seeded),
            "get_dropped_404": g(&c.q_get_dropped_404), "empty": g(&c.q_empty),
        },
        "query_transport_errors": g(&c.q_errors),
        "stream_events": g(&c.stream_events),
        "stream_connections": g(&c.stream_connections),
        "holds_lifted": lifted,
        "days_dropped": drop_lat.len(),
        "drop_after_lift_secs_max": drop_lat.iter().copied().fold(0.0, f64::max),
        "first_retained_seq": fin.first_seq,
        "last_seq": fin.last_seq,
        "exported": fin.exported,
        "export_secs": fin.export_secs,
        "rss_max_mib": rss,
        "rss_anon_max_mib": anon,
        "rss_bound_mib": run.o.rss_max_mib,
        "verify": fin.verify,
        "check": fin.check,
        "daemon_errors_logged": g(&dlog.errors),
        "daemon_warnings_logged": g(&dlog.warnings),
        "failures": failures.0,
        "failure_messages": failures.1,
        "run_dir": paths.run_dir.display().to_string(),
    });
    // Added after the macro (one more field inside it passes its recursion limit).
    json["stream_own_events"] = json!(g(&c.stream_own_events));
    json["stele_own_records"] = json!(fin.own_records);
    json["stele_own_records_by_category"] = json!(fin.own_by_category);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nsoak summary ({})",
        if failures.1.is_empty() {
            "PASSED"
        } else {
            "FAILED"
        }
    );
    let _ = writeln!(
        t,
        "  load duration          {load_secs:.1} s (+ final checks)"
    );
    let _ = writeln!(
        t,
        "  events acknowledged    {acked_total} ({http_acked} over HTTP, {:.0}/s; {} seeded)",
        http_acked as f64 / load_secs.max(1e-9),
        json["events_seeded"]
    );
    let _ = writeln!(
        t,
        "  ingest                 {} requests answered, {} retried after a failure ({} \
         answered 200 replayed, {} partial batches 409), {} abandoned",
        g(&c.ingest_requests),
        g(&c.retried),
        g(&c.replayed),
        g(&c.partial_batches),
        g(&c.abandoned)
    );
    let _ = writeln!(
        t,
        "  dropped by retention   {} acknowledged events ({} of {} seeded days, holds lifted: \
         {lifted}; dropped ≤ {:.1} s after the lift)",
        fin.dropped_acked,
        drop_lat.len(),
        run.days.len(),
        json["drop_after_lift_secs_max"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        t,
        "  stored, never acked    {} (in flight at a kill)",
        fin.stored_unacked
    );
    let _ = writeln!(
        t,
        "  crashes (kill -9)      {} (+ {} unexpected exits); restart mean {restart_mean:.2} s, \
         max {restart_max:.2} s",
        sup.kills, sup.unexpected_exits
    );
    let _ = writeln!(
        t,
        "  queries                {queries} (list {}, search {}, stats {}, get {}, get seeded {} \
         of which {} dropped → 404; {} empty)",
        g(&c.q_list),
        g(&c.q_search),
        g(&c.q_stats),
        g(&c.q_get),
        g(&c.q_get_seeded),
        g(&c.q_get_dropped_404),
        g(&c.q_empty)
    );
    let _ = writeln!(
        t,
        "  stream events          {} over {} connections ({} of them Stele's own records, \
         unfiltered stream)",
        g(&c.stream_events),
        g(&c.stream_connections),
        g(&c.stream_own_events)
    );
    let _ = writeln!(
        t,
        "  final log              seqs {}..={}, {} exported in {:.1} s",
        fin.first_seq, fin.last_seq, fin.exported, fin.export_secs
    );
    let by_category: Vec<String> = fin
        .own_by_category
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let _ = writeln!(
        t,
        "  Stele's own records    {} in the export ({})",
        fin.own_records,
        if by_category.is_empty() {
            "none".to_owned()
        } else {
            by_category.join(", ")
        }
    );
    let _ = writeln!(
        t,
        "  max RSS                {rss:.1} MiB (anonymous {anon:.1} MiB); bound {} MiB",
        run.o.rss_max_mib
    );
    let _ = writeln!(t, "  stele verify / check   {} / {}", fin.verify, fin.check);
    let _ = writeln!(
        t,
        "  daemon log             {} errors, {} warnings ({})",
        g(&dlog.errors),
        g(&dlog.warnings),
        paths.run_dir.join("daemon.log").display()
    );
    for e in lock(&dlog.first_errors).iter().take(5) {
        let _ = writeln!(t, "    {e}");
    }
    for r in lock(&dlog.recovery_notes).iter().take(5) {
        let _ = writeln!(t, "    recovery: {r}");
    }
    if failures.1.is_empty() {
        if run.o.keep {
            let _ = writeln!(t, "  PASSED: no failure");
        } else {
            let _ = writeln!(
                t,
                "  PASSED: no failure ({} deleted; --keep keeps it)",
                paths.run_dir.display()
            );
        }
    } else {
        let _ = writeln!(
            t,
            "  FAILED: {} failures; data kept in {}",
            failures.0,
            paths.run_dir.display()
        );
        for f in &failures.1 {
            let _ = writeln!(t, "    {f}");
        }
    }
    Summary {
        json,
        text: t,
        failures: failures.1,
    }
}
