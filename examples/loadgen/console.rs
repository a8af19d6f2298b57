//! Scenario `console`: the web console in headless Chromium (Debian's
//! `chromium` and `chromedriver`, driven as the console's tests drive them)
//! against a daemon holding `--events` events (default 1,000,000).
//!
//! For each view (the events list, a full-text search, the dashboard) it
//! opens the page `--runs` times in a fresh browser profile (a cold cache)
//! and reads Chromium's performance timeline: `domInteractive` of the page,
//! the console's own marks `stele-view` (the view's controls are in place)
//! and `stele-ready` (its first data is shown: the first results page, the
//! dashboard's figures), and the bytes transferred for the console's files
//! (compressed, as sent) apart from the API's answers. A warm reload (the
//! files revalidated by ETag) follows each view's cold runs.
//!
//! Then the live delay: with Live on in the events view, `--live-events`
//! single events are posted 100 ms apart; a MutationObserver in the page
//! notes when each row appears (epoch milliseconds from the page's own
//! clock, `performance.timeOrigin + performance.now()`), and the delay is
//! that minus the moment the 201 arrived (same machine, same clock).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use hyper::Method;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::client::{healthy, Client};
use crate::daemon::Ctx;
use crate::query::ingest_unmeasured;
use crate::report::{r2, Report};
use crate::{Opts, JSON};

pub const CONSOLE_EVENTS_DEFAULT: u64 = 1_000_000;

/// What one page load measured, in milliseconds from navigation start and bytes.
#[derive(Debug, Clone)]
struct Load {
    dom_interactive: f64,
    view: f64,
    ready: f64,
    asset_bytes: f64,
    asset_decoded: f64,
    api_bytes: f64,
    requests: f64,
}

const TIMING: &str = "
const nav = performance.getEntriesByType('navigation')[0];
const mark = (n) => { const e = performance.getEntriesByName(n)[0]; return e ? e.startTime : null; };
const res = performance.getEntriesByType('resource');
const api = (e) => new URL(e.name).pathname.startsWith('/v1/') || new URL(e.name).pathname === '/readyz';
const sum = (xs, f) => xs.reduce((a, e) => a + f(e), 0);
const assets = res.filter((e) => !api(e));
return {
  dom_interactive: nav.domInteractive, view: mark('stele-view'), ready: mark('stele-ready'),
  asset_bytes: nav.transferSize + sum(assets, (e) => e.transferSize),
  asset_decoded: nav.decodedBodySize + sum(assets, (e) => e.decodedBodySize),
  api_bytes: sum(res.filter(api), (e) => e.transferSize),
  requests: res.length + 1,
};";

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// Opens `url` (after `about:blank`, so a hash-only change is a real load)
/// and waits for the view's first data.
fn load(b: &Browser, url: &str) -> Result<Load> {
    b.goto("about:blank");
    b.goto(url);
    b.find("body[data-ready='1']");
    let v = b.eval(TIMING);
    let f = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| anyhow!("{url}: no {k} in the timeline: {v}"))
    };
    if b.eval("return !!document.querySelector('[data-test=error], .error');") == json!(true) {
        bail!("{url}: the view shows an error");
    }
    Ok(Load {
        dom_interactive: f("dom_interactive")?,
        view: f("view")?,
        ready: f("ready")?,
        asset_bytes: f("asset_bytes")?,
        asset_decoded: f("asset_decoded")?,
        api_bytes: f("api_bytes")?,
        requests: f("requests")?,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

pub fn console(rt: &tokio::runtime::Runtime, o: &Opts) -> Result<Report> {
    let events = o.events.unwrap_or(CONSOLE_EVENTS_DEFAULT);
    let mut report = Report::new(
        "console",
        format!(
            "the web console in headless Chromium over {events} events: {} cold loads per view, \
             then {} live events",
            o.runs, o.live_events
        ),
        json!({"events": events, "runs": o.runs, "live_events": o.live_events,
               "event_bytes": o.event_bytes, "seed": o.seed}),
    );
    let (daemon, ctx) = crate::target(o)?;
    let result = measure(rt, o, &ctx, events, &mut report);
    if let Some(d) = daemon {
        report.daemon_notes(&d.stop());
    }
    result.map(|()| report)
}

fn measure(
    rt: &tokio::runtime::Runtime,
    o: &Opts,
    ctx: &Ctx,
    events: u64,
    report: &mut Report,
) -> Result<()> {
    let samples = rt.block_on(async {
        healthy(ctx).await?;
        ingest_unmeasured(ctx, o, events, "console", report).await
    })?;
    let word = samples
        .iter()
        .find_map(|s| s.word.clone())
        .ok_or_else(|| anyhow!("no word to search for in the ingested events"))?;
    let origin = format!("http://{}", ctx.addr);
    let token = o.token.clone().or_else(|| {
        ctx.authorization
            .as_ref()
            .map(|a| a.trim_start_matches("Bearer ").to_owned())
    });
    let signed_in = |b: &Browser| {
        if let Some(t) = &token {
            // The key where the console keeps it: this tab's session storage.
            b.goto(&format!("{origin}/console/favicon.svg"));
            b.eval(&format!(
                "sessionStorage.setItem('stele.key', {}); return null;",
                json!(t)
            ));
        }
    };

    let views = [
        ("events", "#/events".to_owned()),
        ("search", format!("#/events?q={word}")),
        ("dashboard", "#/dashboard".to_owned()),
    ];
    let mut per_view = serde_json::Map::new();
    for (name, hash) in &views {
        let url = format!("{origin}/{hash}");
        let mut cold = Vec::new();
        for run in 0..o.runs {
            let b = Browser::start(); // a fresh profile: nothing cached
            signed_in(&b);
            cold.push(load(&b, &url)?);
            if run + 1 == o.runs {
                let warm = load(&b, &url)?;
                let col = |f: fn(&Load) -> f64| median(cold.iter().map(f).collect());
                let max = |f: fn(&Load) -> f64| cold.iter().map(f).fold(0.0, f64::max);
                report.line(
                    &format!("{name}: first data (cold) p50 / max"),
                    format!(
                        "{:.0} / {:.0} ms  (view controls {:.0} ms, page interactive {:.0} ms)",
                        col(|l| l.ready),
                        max(|l| l.ready),
                        col(|l| l.view),
                        col(|l| l.dom_interactive)
                    ),
                );
                report.line(
                    &format!("{name}: first data (warm reload)"),
                    format!("{:.0} ms", warm.ready),
                );
                report.line(
                    &format!("{name}: bytes transferred"),
                    format!(
                        "console files {:.1} KB compressed ({:.1} KB decoded, {:.0} requests), API {:.1} KB",
                        col(|l| l.asset_bytes) / 1000.0,
                        col(|l| l.asset_decoded) / 1000.0,
                        col(|l| l.requests),
                        col(|l| l.api_bytes) / 1000.0
                    ),
                );
                per_view.insert(
                    (*name).to_owned(),
                    json!({
                        "ready_ms_p50": r2(col(|l| l.ready)), "ready_ms_max": r2(max(|l| l.ready)),
                        "view_ms_p50": r2(col(|l| l.view)),
                        "dom_interactive_ms_p50": r2(col(|l| l.dom_interactive)),
                        "warm_ready_ms": r2(warm.ready),
                        "asset_bytes": col(|l| l.asset_bytes),
                        "asset_decoded_bytes": col(|l| l.asset_decoded),
                        "api_bytes": col(|l| l.api_bytes),
                    }),
                );
            }
        }
    }
    report.set("views", Value::Object(per_view));

    // The live delay.
    let b = Browser::start();
    signed_in(&b);
    load(&b, &format!("{origin}/#/events"))?;
    let live = b.find("[data-test=live]");
    b.with(|_| live.click())
        .map_err(|e| anyhow!("cannot turn Live on: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.eval("return document.querySelector('.live-status')?.dataset.state || '';") != "live" {
        if Instant::now() > deadline {
            bail!("the live view did not connect within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    b.eval(
        "window.__seen = {};
         new MutationObserver((ms) => {
           const t = performance.timeOrigin + performance.now();
           for (const m of ms) for (const n of m.addedNodes)
             if (n.dataset && n.dataset.id && !(n.dataset.id in window.__seen)) window.__seen[n.dataset.id] = t;
         }).observe(document.querySelector('main'), {childList: true, subtree: true});
         return null;",
    );
    let mut client = Client::new(ctx);
    let mut acked = Vec::new();
    for i in 0..o.live_events {
        let id = format!("console-live-{}-{i}", o.seed);
        let body = json!({"id": id, "action": "login", "actor": "loadgen", "tenant": "acme"});
        let a = rt
            .block_on(client.call(
                Method::POST,
                "/v1/events",
                Some(JSON),
                Bytes::from(body.to_string()),
            ))
            .map_err(|e| anyhow!("posting a live event: {e}"))?;
        if !a.status.is_success() {
            bail!("a live event was refused: {}", a.status);
        }
        acked.push((id, epoch_ms()));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let seen = b.eval("return window.__seen;");
    let mut delays: Vec<f64> = acked
        .iter()
        .filter_map(|(id, at)| seen[id].as_f64().map(|t| (t - at).max(0.0)))
        .collect();
    let missing = acked.len() - delays.len();
    delays.sort_by(f64::total_cmp);
    if delays.is_empty() {
        bail!("no live event reached the page");
    }
    report.line(
        "live: 201 → row shown p50 / p95 / max",
        format!(
            "{:.0} / {:.0} / {:.0} ms ({} events, {missing} missing)",
            quantile(&delays, 0.5),
            quantile(&delays, 0.95),
            quantile(&delays, 1.0),
            acked.len()
        ),
    );
    report.set(
        "live_ms",
        json!({"p50": r2(quantile(&delays, 0.5)), "p95": r2(quantile(&delays, 0.95)),
               "max": r2(quantile(&delays, 1.0)), "missing": missing}),
    );
    Ok(())
}
