//! The final checks, after the load: a fresh daemon without retention exports every
//! event, checked against every acknowledgement (nothing lost, moved or duplicated);
//! `retention.log` must account for exactly the dropped seqs; then `stele verify` and
//! `stele check` run offline.
//!
//! The export also holds the records Stele appends itself (exports include them by
//! default): findings of the detectors (on by default, so on in the soak too) and
//! `audit_access` records. An event is taken as Stele's own only if it really is one
//! ([`classify`]: `ingested_by` `stele` and a category in [`OWN_CATEGORIES`]); its seq
//! counts as present and it is counted, never as a client's event. Anything else that
//! no client of the soak sent is foreign and fails the run.

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

/// `ingested_by` of the records Stele writes itself.
pub const OWN_INGESTED_BY: &str = stele::event::INGESTED_BY_STELE;
/// The categories of the records Stele writes itself that the soak knows: the
/// detectors' findings and the record of a read made with a key. A record of Stele's
/// in another category is a failure until the soak learns about it.
pub const OWN_CATEGORIES: [&str; 2] = [
    stele::intel::finding::CATEGORY,
    stele::event::AUDIT_ACCESS_CATEGORY,
];

/// The fields of one exported event the check reads.
#[derive(serde::Deserialize, Debug)]
pub struct Row {
    pub id: String,
    pub seq: u64,
    #[serde(default)]
    pub ingested_by: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
}

/// What an exported event is.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// One of the soak's own client ids, by its number.
    Client(u64),
    /// A record Stele wrote itself, of this category.
    Own(String),
    /// Neither: a failure, with why.
    Foreign(String),
}

/// Classifies an exported event: a client id of this run (`prefix` + a number below
/// `n_max`) is [`Kind::Client`] (whatever else it says: the id-based checks then
/// judge it); otherwise it is [`Kind::Own`] only with `ingested_by` exactly
/// [`OWN_INGESTED_BY`] and a category exactly one of [`OWN_CATEGORIES`], and
/// [`Kind::Foreign`] in every other case (also a record of Stele's claiming the soak's
/// id space, or one of Stele's with a category the soak does not know).
pub fn classify(row: &Row, prefix: &str, n_max: u64) -> Kind {
    if let Some(rest) = row.id.strip_prefix(prefix) {
        return match rest.parse::<u64>() {
            Ok(n) if n < n_max => Kind::Client(n),
            _ => Kind::Foreign(format!(
                "in the soak's id space, but not a client id it handed out (0..{n_max})"
            )),
        };
    }
    match (row.ingested_by.as_deref(), row.category.as_deref()) {
        (Some(OWN_INGESTED_BY), Some(c)) if OWN_CATEGORIES.contains(&c) => Kind::Own(c.to_owned()),
        (Some(OWN_INGESTED_BY), c) => Kind::Foreign(format!(
            "ingested_by {OWN_INGESTED_BY:?} but category {c:?}, not one of Stele's own \
             the soak knows ({OWN_CATEGORIES:?})"
        )),
        (by, _) => Kind::Foreign(format!("not a client id of this run, ingested_by {by:?}")),
    }
}

/// What the final checks found.
#[derive(Default)]
pub struct Final {
    pub first_seq: u64,
    pub last_seq: u64,
    pub exported: u64,
    /// Exported records Stele wrote itself (findings, `audit_access`), by category.
    pub own_records: u64,
    pub own_by_category: std::collections::BTreeMap<String, u64>,
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
    let mut line_no = 0u64;
    let prefix = run.prefix.clone();
    let mut handle = |line: &[u8], run: &Run| {
        line_no += 1;
        let row: Row = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                run.fail(format!("export line {line_no} is not an event: {e}"));
                return;
            }
        };
        // Every exported seq, whoever wrote the event: in range and once.
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
        let n = match classify(&row, &prefix, n_max as u64) {
            Kind::Client(n) => n,
            Kind::Own(category) => {
                fin.own_records += 1;
                *fin.own_by_category.entry(category).or_default() += 1;
                return;
            }
            Kind::Foreign(why) => {
                foreign += 1;
                if foreign <= 5 {
                    run.fail(format!(
                        "export holds a foreign event {:?} (seq {}): {why}",
                        row.id, row.seq
                    ));
                }
                return;
            }
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
    if foreign > 5 {
        run.fail(format!("{foreign} foreign events in the export in all"));
    }
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
         by retention; {} stored but never acknowledged; {} Stele's own records {:?}",
        fin.exported,
        fin.export_secs,
        fin.dropped_acked,
        fin.stored_unacked,
        fin.own_records,
        fin.own_by_category
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, by: Option<&str>, category: Option<&str>) -> Row {
        Row {
            id: id.to_owned(),
            seq: 7,
            ingested_by: by.map(str::to_owned),
            category: category.map(str::to_owned),
        }
    }

    const P: &str = "soak42-";

    #[test]
    fn client_ids_of_this_run() {
        assert_eq!(
            classify(&row("soak42-0", Some("loopback"), None), P, 10),
            Kind::Client(0)
        );
        assert_eq!(
            classify(&row("soak42-9", None, None), P, 10),
            Kind::Client(9)
        );
        // Never handed out, or not a number: foreign, even when Stele's own.
        assert!(matches!(
            classify(&row("soak42-10", None, None), P, 10),
            Kind::Foreign(_)
        ));
        let own_in_our_space = row("soak42-x", Some("stele"), Some("stele.finding"));
        assert!(matches!(
            classify(&own_in_our_space, P, 10),
            Kind::Foreign(_)
        ));
    }

    #[test]
    fn own_records_only_when_really_stele_s() {
        let finding = "finding-privilege_change-user-7-medium";
        assert_eq!(
            classify(&row(finding, Some("stele"), Some("stele.finding")), P, 10),
            Kind::Own("stele.finding".to_owned())
        );
        assert_eq!(
            classify(&row("access-1", Some("stele"), Some("audit_access")), P, 10),
            Kind::Own("audit_access".to_owned())
        );
        // The same event from anyone else, or without provenance: foreign.
        for by in [Some("loopback"), Some("cli"), Some("Stele"), None] {
            assert!(matches!(
                classify(&row(finding, by, Some("stele.finding")), P, 10),
                Kind::Foreign(_)
            ));
        }
        // Stele's, but a category the soak does not know (or none, or another case).
        for c in [
            Some("stele.alert"),
            Some("Stele.Finding"),
            Some("auth"),
            None,
        ] {
            assert!(matches!(
                classify(&row(finding, Some("stele"), c), P, 10),
                Kind::Foreign(_)
            ));
        }
        // Another run's client id.
        assert!(matches!(
            classify(&row("soak41-3", Some("loopback"), None), P, 10),
            Kind::Foreign(_)
        ));
    }
}
