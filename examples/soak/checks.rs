//! The final checks, after the load: a fresh daemon without retention exports every
//! event, checked against every acknowledgement (nothing lost, moved or duplicated);
//! `retention.log` must account for exactly the dropped seqs; then `stele verify` and
//! `stele check` run offline.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::watch;

use crate::client::{snippet, Client};
use crate::common::{connect, lock, request};
use crate::daemon::{start_daemon, stop_daemon, DaemonLog};
use crate::retention::observe_first_seq;
use crate::run::Paths;
use crate::state::Run;
use crate::REQUEST_TIMEOUT;

/// What the final checks found.
#[derive(Default)]
pub struct Final {
    pub first_seq: u64,
    pub last_seq: u64,
    pub exported: u64,
    pub export_secs: f64,
    pub dropped_acked: u64,
    pub dropped_logged: u64,
    pub stored_unacked: u64,
    pub verify: String,
    pub check: String,
}

/// Exports everything from a fresh daemon and checks it; runs verify and check.
pub fn final_checks(
    run: &Arc<Run>,
    rt: &tokio::runtime::Runtime,
    paths: &Paths,
    dlog: &Arc<DaemonLog>,
    tx: &watch::Sender<Option<SocketAddr>>,
) -> Result<Final> {
    let mut fin = Final::default();
    // Unstop briefly so that a Client waits for this daemon.
    run.stop.store(false, Ordering::Relaxed);
    let mut d = start_daemon(&paths.stele, &paths.final_config, &paths.data, dlog)?;
    run.pid.store(d.pid, Ordering::Relaxed);
    tx.send_replace(Some(d.addr));
    run.note(&format!(
        "final check: daemon restarted in {:.2} s; exporting",
        d.start_secs
    ));
    let checked = rt.block_on(export_check(run, &mut fin));
    run.stop.store(true, Ordering::Relaxed);
    tx.send_replace(None);
    match stop_daemon(&mut d) {
        Ok(Some(0)) => {}
        Ok(code) => run.fail(format!(
            "the final daemon exited {code:?} on SIGTERM, not 0"
        )),
        Err(e) => run.fail(format!("{e:#}")),
    }
    run.pid.store(0, Ordering::Relaxed);
    checked?;

    // The retention log: drops cover exactly seqs 1..first − 1.
    let rlog = std::fs::read_to_string(paths.data.join("retention.log")).unwrap_or_default();
    let mut next = 1u64;
    for line in rlog.lines() {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("retention.log line is not JSON: {line}"))?;
        let (Some(a), Some(b), Some(n)) = (
            v["first_seq"].as_u64(),
            v["last_seq"].as_u64(),
            v["events"].as_u64(),
        ) else {
            bail!("retention.log line without first_seq/last_seq/events: {line}");
        };
        if a != next {
            run.fail(format!(
                "retention.log: a drop starts at seq {a}, expected {next}"
            ));
        }
        let day = v["day"].as_str().unwrap_or("");
        if !run
            .days
            .iter()
            .any(|d| d.day.to_string() == day && d.lift_sent.load(Ordering::Relaxed))
        {
            run.fail(format!(
                "retention.log: dropped day {day}, which was not a lifted seeded day"
            ));
        }
        fin.dropped_logged += n;
        next = b + 1;
    }
    if next != fin.first_seq {
        run.fail(format!(
            "retention.log accounts for seqs 1..{next}, but the log starts at seq {}",
            fin.first_seq
        ));
    }
    for d in &run.days {
        if lock(&d.lifted_at).is_some() && fin.first_seq <= d.last_seq {
            run.fail(format!(
                "the hold on {} was lifted, but the day was never dropped",
                d.day
            ));
        }
    }

    // Offline: verify the log, compare the indexes with it.
    let verify = Command::new(&paths.stele)
        .args(["verify", "-q"])
        .arg(&paths.data)
        .output()
        .context("cannot run stele verify")?;
    fin.verify = describe_exit(&verify);
    if !verify.status.success() {
        run.fail(format!(
            "stele verify -q {} {}:\n{}{}",
            paths.data.display(),
            fin.verify,
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        ));
    }
    let check = Command::new(&paths.stele)
        .args(["check", "--data-dir"])
        .arg(&paths.data)
        .output()
        .context("cannot run stele check")?;
    fin.check = describe_exit(&check);
    if !check.status.success() {
        run.fail(format!(
            "stele check --data-dir {} {}:\n{}{}",
            paths.data.display(),
            fin.check,
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    run.note(&format!(
        "stele verify {}, stele check {}",
        fin.verify, fin.check
    ));
    Ok(fin)
}

fn describe_exit(out: &std::process::Output) -> String {
    match out.status.code() {
        Some(c) => format!("exit {c}"),
        None => format!("{}", out.status),
    }
}

/// `GET /v1/segments` and `GET /v1/export?format=ndjson`: every acknowledged event at or
/// after the first retained seq exactly once, at its seq.
async fn export_check(run: &Arc<Run>, fin: &mut Final) -> Result<()> {
    let mut client = Client::new(run);
    let errors = AtomicU64::new(0);
    let segs = client
        .get_json("/v1/segments", &errors)
        .await
        .ok_or_else(|| anyhow!("GET /v1/segments failed"))?;
    let list = segs["segments"]
        .as_array()
        .ok_or_else(|| anyhow!("GET /v1/segments: no segments array"))?;
    let first = list
        .first()
        .and_then(|s| s["first_seq"].as_u64())
        .ok_or_else(|| anyhow!("GET /v1/segments: no first segment"))?;
    let last = list
        .iter()
        .filter_map(|s| s["last_seq"].as_u64())
        .max()
        .unwrap_or(first - 1);
    fin.first_seq = first;
    fin.last_seq = last;
    observe_first_seq(run, first);

    let Some(addr) = *run.addr.borrow() else {
        bail!("no daemon for the export");
    };
    let started = Instant::now();
    let mut sender = connect(addr).await.map_err(|e| anyhow!(e))?;
    let req = request(
        &addr.to_string(),
        None,
        Method::GET,
        "/v1/export?format=ndjson",
        None,
        Bytes::new(),
    );
    let resp = sender.send_request(req).await?;
    if resp.status() != StatusCode::OK {
        let b = resp.into_body().collect().await?.to_bytes();
        bail!("GET /v1/export answered: {}", snippet(&b));
    }
    let mut body = resp.into_body();
    let n_max = run.next_n.load(Ordering::Relaxed) as usize;
    let mut seen = vec![0u8; n_max];
    let span = (last + 1).saturating_sub(first) as usize;
    let mut seq_seen = vec![false; span];
    let acked = lock(&run.acked).clone();
    let (mut foreign, mut dup_ids, mut dup_seqs, mut out_of_range, mut moved) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut buf: Vec<u8> = Vec::new();
    #[derive(serde::Deserialize)]
    struct Row {
        id: String,
        seq: u64,
    }
    let mut line_no = 0u64;
    let mut handle = |line: &[u8], run: &Run| {
        line_no += 1;
        let row: Row = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                run.fail(format!("export line {line_no} is not an event: {e}"));
                return;
            }
        };
        let Some(n) = run.n_of(&row.id).filter(|&n| (n as usize) < n_max) else {
            foreign += 1;
            if foreign <= 5 {
                run.fail(format!(
                    "export holds a foreign id {:?} (seq {})",
                    row.id, row.seq
                ));
            }
            return;
        };
        seen[n as usize] = seen[n as usize].saturating_add(1);
        if seen[n as usize] == 2 {
            dup_ids += 1;
            if dup_ids <= 5 {
                run.fail(format!(
                    "id {} appears twice in the export (seq {})",
                    row.id, row.seq
                ));
            }
        }
        if row.seq < first || row.seq > last {
            out_of_range += 1;
            if out_of_range <= 5 {
                run.fail(format!("export seq {} outside {first}..={last}", row.seq));
            }
        } else {
            let s = &mut seq_seen[(row.seq - first) as usize];
            if *s {
                dup_seqs += 1;
                if dup_seqs <= 5 {
                    run.fail(format!("seq {} appears twice in the export", row.seq));
                }
            }
            *s = true;
        }
        let a = acked.get(n as usize).copied().unwrap_or(0);
        if a != 0 && a != row.seq {
            moved += 1;
            if moved <= 5 {
                run.fail(format!(
                    "id {} was acknowledged at seq {a} but is stored at seq {}",
                    row.id, row.seq
                ));
            }
        }
    };
    loop {
        match tokio::time::timeout(REQUEST_TIMEOUT, body.frame()).await {
            Err(_) => bail!("the export stalled for {} s", REQUEST_TIMEOUT.as_secs()),
            Ok(None) => break,
            Ok(Some(Err(e))) => bail!("the export was cut: {e}"),
            Ok(Some(Ok(f))) => {
                let Ok(data) = f.into_data() else { continue };
                buf.extend_from_slice(&data);
                let mut start = 0;
                while let Some(p) = buf[start..].iter().position(|&b| b == b'\n') {
                    let line = &buf[start..start + p];
                    if !line.is_empty() {
                        handle(line, run);
                    }
                    start += p + 1;
                }
                buf.drain(..start);
            }
        }
    }
    if !buf.is_empty() {
        handle(&buf.clone(), run);
    }
    fin.exported = line_no;
    fin.export_secs = started.elapsed().as_secs_f64();
    let missing_seqs = seq_seen.iter().filter(|s| !**s).count();
    if missing_seqs > 0 {
        run.fail(format!(
            "{missing_seqs} seqs of {first}..={last} are missing from the export"
        ));
    }
    // Every acknowledged event: exported once, or dropped by retention.
    let mut lost = 0u64;
    for (n, &seq) in acked.iter().enumerate() {
        if seq == 0 {
            if seen.get(n).copied().unwrap_or(0) == 1 {
                fin.stored_unacked += 1;
            }
            continue;
        }
        if seq < first {
            fin.dropped_acked += 1;
            let day_ok = run.days.iter().any(|d| {
                (d.first_n..d.first_n + d.count).contains(&(n as u64))
                    && d.lift_sent.load(Ordering::Relaxed)
            });
            if !day_ok {
                lost += 1;
                if lost <= 10 {
                    run.fail(format!(
                        "acknowledged {} (seq {seq}) is below the first retained seq {first} \
                         but was not in a lifted seeded day",
                        run.id(n as u64)
                    ));
                }
            }
        } else if seen.get(n).copied().unwrap_or(0) == 0 {
            lost += 1;
            if lost <= 10 {
                run.fail(format!(
                    "LOST: acknowledged {} (seq {seq}, first retained seq {first}) is not in the \
                     export",
                    run.id(n as u64)
                ));
            }
        }
    }
    if lost > 10 {
        run.fail(format!("{lost} acknowledged events lost in all"));
    }
    run.note(&format!(
        "export: {} events (seqs {first}..={last}) in {:.1} s; {} acknowledged events dropped \
         by retention; {} stored but never acknowledged",
        fin.exported, fin.export_secs, fin.dropped_acked, fin.stored_unacked
    ));
    Ok(())
}
