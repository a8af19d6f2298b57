//! What a scenario reports: aligned text lines for people and one JSON object
//! for scripts, with the latency and answer-tally helpers every scenario uses.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::client::Tally;
use crate::daemon::DaemonNotes;
use crate::gen::Produced;

pub struct Report {
    pub name: &'static str,
    pub head: String,
    pub lines: Vec<String>,
    pub json: Map<String, Value>,
}

impl Report {
    pub fn new(name: &'static str, head: String, config: Value) -> Report {
        let mut json = Map::new();
        json.insert("scenario".into(), json!(name));
        json.insert("config".into(), config);
        Report {
            name,
            head,
            lines: Vec::new(),
            json,
        }
    }

    pub fn line(&mut self, label: &str, value: impl std::fmt::Display) {
        self.lines.push(format!("  {label:<40} {value}"));
    }

    pub fn set(&mut self, key: &str, v: Value) {
        self.json.insert(key.into(), v);
    }

    /// p50/p95/p99/max lines (in ms) and a JSON object under `key`.
    pub fn latency(
        &mut self,
        key: &str,
        label: &str,
        h: &Histogram<u64>,
        targets: &[(&str, &str)],
    ) {
        self.set(key, latency_json(h));
        if h.is_empty() {
            self.line(label, "no samples");
            return;
        }
        for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99"), (1.0, "max")] {
            let v = if q >= 1.0 {
                h.max()
            } else {
                h.value_at_quantile(q)
            };
            let target = targets
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| format!("   ({t})"))
                .unwrap_or_default();
            self.line(
                &format!("{label} {name}"),
                format!("{:.2} ms{target}", ms(v)),
            );
        }
    }

    pub fn tally(&mut self, t: &Tally) {
        let codes: Vec<String> = t
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        self.line("answers by status (whole run)", codes.join(", "));
        self.line("non-2xx answers (whole run)", t.non_2xx());
        if let Some(p) = &t.first_problem {
            self.line("  first non-2xx answer", p);
        }
        if t.replayed > 0 {
            self.line(
                "replayed (ids already stored!)",
                format!(
                    "{}   (rerun with another --seed or a fresh daemon)",
                    t.replayed
                ),
            );
        }
        self.line("transport errors (whole run)", t.transport_errors);
        if let Some(e) = &t.first_transport_error {
            self.line("  first transport error", e);
        }
        self.set(
            "answers_by_status",
            Value::Object(
                t.by_status
                    .iter()
                    .map(|(s, n)| (s.to_string(), json!(n)))
                    .collect(),
            ),
        );
        self.set("non_2xx", json!(t.non_2xx()));
        self.set("replayed", json!(t.replayed));
        self.set("transport_errors", json!(t.transport_errors));
        self.set("first_problem", json!(t.first_problem));
    }

    pub fn daemon_notes(&mut self, n: &DaemonNotes) {
        self.line("daemon warnings/errors logged", n.warning_count);
        for w in &n.warnings {
            self.lines.push(format!("    {w}"));
        }
        if let Some(e) = &n.exited_early {
            self.line("daemon", e);
        }
        self.set("daemon_warnings", json!(n.warning_count));
        self.set("daemon_warning_lines", json!(n.warnings));
    }

    pub fn print(&self, json_mode: bool) {
        let mut text = format!("== {} == {}\n", self.name, self.head);
        for l in &self.lines {
            text.push_str(l);
            text.push('\n');
        }
        if json_mode {
            eprint!("{text}");
            println!("{}", Value::Object(self.json.clone()));
        } else {
            print!("{text}");
        }
    }
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub fn ms2(us: u64) -> f64 {
    r2(us as f64 / 1000.0)
}

/// Rounded to 2 decimals (for JSON).
pub fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

pub fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50_ms": ms2(h.value_at_quantile(0.5)),
        "p95_ms": ms2(h.value_at_quantile(0.95)),
        "p99_ms": ms2(h.value_at_quantile(0.99)),
        "max_ms": ms2(h.max()),
        "mean_ms": r2(h.mean() / 1000.0),
    })
}

pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| {
        ms(if q >= 1.0 {
            h.max()
        } else {
            h.value_at_quantile(q)
        })
    })
}

/// How big the generated events are, for headings.
pub fn size_text(event_bytes: usize) -> String {
    if event_bytes == 0 {
        "events of the generator's natural size".into()
    } else {
        format!("≈{event_bytes} bytes per event")
    }
}

pub fn generator_lines(report: &mut Report, stalls: u64, made: Option<Produced>) {
    let note = if stalls > 0 {
        "   (times a client found no body ready: the generator may have limited the load)"
    } else {
        ""
    };
    report.line("generator stalls", format!("{stalls}{note}"));
    report.set("generator_stalls", json!(stalls));
    if let Some(p) = made {
        report.line(
            "generator capacity (its own thread)",
            format!("{:.0} events/s", p.capacity()),
        );
        report.set("generator_events_per_s", json!(p.capacity().round()));
    }
}
