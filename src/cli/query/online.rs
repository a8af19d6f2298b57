//! `stele query --url`: the daemon's listing over HTTP (a blocking `ureq`
//! client, rustls on ring for https), page after page by `next_cursor` until
//! `-n` events are printed.
//!
//! An answer that is not 2xx is a problem+json document: its `detail` is
//! printed as the server wrote it (exit 2 for a 400, 1 otherwise).

use super::output::Printer;
use super::{bad, failed, output_error, Ask, Fail};
use serde_json::value::RawValue;
use std::io::Write;
use std::time::Duration;
use stele::query::LIMIT_MAX;

/// The most bytes of one listing page read (1,000 events of at most
/// 256 KiB each, escaped as JSON).
const PAGE_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// The most bytes of an error answer read.
const PROBLEM_BYTES_MAX: u64 = 64 * 1024;
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a listing may wait for the server's next bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The daemon's base URL, the key and the HTTP agent.
pub(crate) struct Client {
    /// Without a trailing slash.
    pub base: String,
    key: Option<String>,
    agent: ureq::Agent,
}

/// One page of `GET /v1/events`: the events as the server wrote them.
#[derive(serde::Deserialize)]
struct PageText {
    events: Vec<Box<RawValue>>,
    next_cursor: Option<String>,
}

/// The answer to a request: a body to read, or why there is none.
pub(crate) enum Answer {
    Ok(ureq::Body),
    /// The server answered with an error status (its problem, in a
    /// sentence) or could not be reached.
    Refused {
        status: Option<u16>,
        message: String,
    },
}

impl Client {
    pub fn new(url: &str, key: Option<String>) -> Result<Client, Fail> {
        let base = url.trim_end_matches('/').to_string();
        let parsed: Option<ureq::http::Uri> = base.parse().ok();
        let scheme_ok = parsed
            .as_ref()
            .and_then(|u| u.scheme_str())
            .is_some_and(|s| s == "http" || s == "https");
        let host_ok = parsed.as_ref().and_then(|u| u.host()).is_some();
        let no_query = parsed.as_ref().is_some_and(|u| u.query().is_none());
        if !(scheme_ok && host_ok && no_query) {
            return Err(bad(format!(
                "--url {url:?} is not a daemon's base URL: write http://HOST:PORT or \
                 https://HOST:PORT"
            )));
        }
        if key
            .as_deref()
            .is_some_and(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(bad(
                "the API key (--key or $STELE_API_KEY) must be printable ASCII without spaces, \
                 as `stele keygen` makes them",
            ));
        }
        Ok(Client {
            base,
            key,
            agent: agent(READ_TIMEOUT),
        })
    }

    /// An agent that reads up to `read_timeout` without a byte before
    /// giving up on a connection.
    pub fn agent_with(&self, read_timeout: Duration) -> ureq::Agent {
        agent(read_timeout)
    }

    /// GETs `path` with `pairs` as its query string through `agent`.
    pub fn get(
        &self,
        agent: &ureq::Agent,
        path: &str,
        pairs: &[(String, String)],
        headers: &[(&str, String)],
    ) -> Answer {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            qs.append_pair(k, v);
        }
        let url = format!("{}{path}?{}", self.base, qs.finish());
        let mut req = agent.get(&url);
        if let Some(k) = &self.key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.call() {
            Ok(resp) if resp.status().is_success() => Answer::Ok(resp.into_body()),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let message = problem_message(status, resp.into_body());
                Answer::Refused {
                    status: Some(status),
                    message,
                }
            }
            Err(e) => Answer::Refused {
                status: None,
                message: format!("cannot reach {}: {}", self.base, describe(&e)),
            },
        }
    }

    /// Pages of `GET /v1/events` until `ask.count` events are printed or
    /// the listing ends.
    pub fn list<W: Write>(&self, ask: &Ask, p: &mut Printer<W>) -> Result<(), Fail> {
        self.pages(ask, ask.sort, ask.order, |ev| {
            p.event(ev.get()).or_else(output_error)
        })
    }

    /// Calls `each` with every event of the listing `ask` asks for, in
    /// `sort`/`order`, at most `ask.count`.
    pub fn pages(
        &self,
        ask: &Ask,
        sort: &str,
        order: &str,
        mut each: impl FnMut(&RawValue) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        let mut left = ask.count;
        let mut cursor: Option<String> = None;
        while left > 0 {
            let mut pairs = ask.pairs.clone();
            pairs.push(("sort".into(), sort.into()));
            pairs.push(("order".into(), order.into()));
            let limit = left.min(LIMIT_MAX as u64);
            pairs.push(("limit".into(), limit.to_string()));
            if let Some(c) = cursor.take() {
                pairs.push(("cursor".into(), c));
            }
            let page = self.page(&pairs)?;
            for ev in page.events.iter().take(left as usize) {
                each(ev)?;
                left -= 1;
            }
            match page.next_cursor {
                Some(c) if !page.events.is_empty() => cursor = Some(c),
                _ => break,
            }
        }
        Ok(())
    }

    fn page(&self, pairs: &[(String, String)]) -> Result<PageText, Fail> {
        match self.get(&self.agent, "/v1/events", pairs, &[]) {
            Answer::Ok(body) => {
                let text = body
                    .into_with_config()
                    .limit(PAGE_BYTES_MAX)
                    .read_to_string()
                    .map_err(|e| {
                        failed(format!(
                            "reading a page from {}: {}",
                            self.base,
                            describe(&e)
                        ))
                    })?;
                serde_json::from_str(&text).map_err(|e| {
                    failed(format!(
                        "{} answered GET /v1/events with something other than a listing: {e}",
                        self.base
                    ))
                })
            }
            Answer::Refused { status, message } => Err(refused(status, message)),
        }
    }
}

/// The failure for a refused request: a 400 is a bad request (exit 2).
pub(crate) fn refused(status: Option<u16>, message: String) -> Fail {
    if status == Some(400) {
        bad(message)
    } else {
        failed(message)
    }
}

fn agent(read_timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(read_timeout))
        .user_agent(concat!("stele-query/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// An error answer in a sentence: `HTTP 400 (Bad Request): <detail>` from its
/// problem+json, else its first bytes.
fn problem_message(status: u16, body: ureq::Body) -> String {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let text = body
        .into_with_config()
        .limit(PROBLEM_BYTES_MAX)
        .lossy_utf8(true)
        .read_to_string()
        .unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            let d = v.get("detail").and_then(|d| d.as_str())?.to_string();
            Some(d)
        })
        .unwrap_or_else(|| super::output::clip(text.trim(), 200));
    format!("HTTP {status} ({reason}): {detail}")
}

/// A transport error in words (ureq's own text names the cause).
pub(crate) fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}
