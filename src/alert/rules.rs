//! The configuration of alerts (`[[webhooks]]` and `[[alerts]]`) and its
//! checked form ([`AlertSet`]): what a rule matches, where it is delivered.
//!
//! Pure: no I/O except reading a webhook's `secret_file` while compiling.
//! A rule's filter is a query string of the listing parameters of
//! `GET /v1/events`, parsed by [`crate::query::Query::parse`] so that a
//! filter means here exactly what it means to a listing (and to a stream:
//! the fields are matched by [`crate::query::Filter::matches_fields`], `q`
//! by the text index).

use crate::query::{Filter, Query};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// At most this many `[[webhooks]]`.
pub const WEBHOOKS_MAX: usize = 16;
/// At most this many `[[alerts]]`.
pub const ALERTS_MAX: usize = 64;
/// Longest name of a webhook or a rule, in bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// Longest filter, in bytes (a URL's query string).
pub const FILTER_BYTES_MAX: usize = 4096;
/// Shortest threshold window.
pub const WINDOW_SECS_MIN: u64 = 1;
/// Longest threshold window (one day): what a restart replays is bounded by it.
pub const WINDOW_SECS_MAX: u64 = 86_400;
/// Largest threshold (events in one window).
pub const THRESHOLD_MAX: u64 = 1_000_000;
/// Default and largest time one delivery attempt may take, in seconds.
pub const TIMEOUT_SECS_DEFAULT: u64 = 10;
/// See [`TIMEOUT_SECS_DEFAULT`].
pub const TIMEOUT_SECS_MAX: u64 = 60;
/// Default and largest pause between two attempts of one delivery, in seconds.
pub const BACKOFF_MAX_SECS_DEFAULT: u64 = 60;
/// See [`BACKOFF_MAX_SECS_DEFAULT`].
pub const BACKOFF_MAX_SECS_MAX: u64 = 3600;
/// Shortest secret of a `stele` webhook, in bytes.
pub const SECRET_BYTES_MIN: usize = 16;

/// The category of the findings Stele writes about the log (its detections).
pub const FINDING_CATEGORY: &str = "stele.finding";

/// The listing parameters that make no sense in a rule: the window gives
/// the time range, and there is no page to sort or continue.
const NOT_IN_FILTER: [&str; 8] = [
    "since", "until", "hours", "sort", "order", "limit", "cursor", "interval",
];

/// `[[webhooks]]`: a receiver of alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// What rules call it by (`alerts[].webhook`).
    pub name: String,
    /// `http://` or `https://` URL the notifications are POSTed to.
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Stele-Signature` header. Required for
    /// `format = "stele"` (at least 16 bytes); optional for `slack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A file holding the secret instead (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// `stele` (the whole notification) or `slack` (`{"text": ...}`, what a
    /// Slack-compatible incoming webhook takes). Default: `stele`.
    #[serde(default)]
    pub format: Format,
    /// Seconds one attempt may take. Default: 10. Minimum 1, maximum 60.
    #[serde(default = "timeout_default")]
    pub timeout_secs: u64,
    /// Longest pause between attempts (the pause doubles from 0.5 s up to
    /// this), seconds. Default: 60. Minimum 1, maximum 3600.
    #[serde(default = "backoff_default")]
    pub backoff_max_secs: u64,
}

fn timeout_default() -> u64 {
    TIMEOUT_SECS_DEFAULT
}

fn backoff_default() -> u64 {
    BACKOFF_MAX_SECS_DEFAULT
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The whole notification as JSON.
    #[default]
    Stele,
    /// `{"text": "..."}` only.
    Slack,
}

/// `[[alerts]]`: a rule. Either `filter` with `threshold` and `window`, or
/// `finding_kind` and/or `finding_severity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The rule's name (in notifications and logs).
    pub name: String,
    /// The `[[webhooks]]` entry that receives its notifications.
    pub webhook: String,
    /// A query string of `GET /v1/events`' filters, `q` included
    /// (`action=login&status=failure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Matching events in one window that fire the rule. Minimum 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
    /// The window: `<n>s`, `<n>m`, `<n>h` or `<n>d`, 1 s to 1 d.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Fire on every finding of this kind (its `action`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_kind: Option<String>,
    /// Fire on every finding of at least this severity (`low`, `medium`,
    /// `high`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_severity: Option<String>,
}

/// A finding's severity, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FindingSeverity {
    /// `low`
    Low,
    /// `medium`
    Medium,
    /// `high`
    High,
}

impl FindingSeverity {
    /// `low`, `medium` or `high`.
    pub fn parse(s: &str) -> Option<FindingSeverity> {
        match s {
            "low" => Some(FindingSeverity::Low),
            "medium" => Some(FindingSeverity::Medium),
            "high" => Some(FindingSeverity::High),
            _ => None,
        }
    }
}

/// A checked webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its name.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// The HMAC key (none: no signature header, `slack` only).
    pub secret: Option<Vec<u8>>,
    /// The body's shape.
    pub format: Format,
    /// One attempt's time limit.
    pub timeout: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// `threshold` matching events within one window.
    Threshold {
        /// The filter, as parsed by the listing (boxed: a `Filter` is large).
        filter: Box<Filter>,
        /// The filter's parameters, for the link to the events.
        params: Vec<(String, String)>,
        /// Events that fire the rule.
        threshold: u64,
        /// Window length in microseconds.
        window_us: i64,
    },
    /// Every finding of a kind and/or of a minimum severity.
    Finding {
        /// The finding's kind (its `action`), if restricted.
        kind: Option<String>,
        /// The least severity, if restricted.
        min_severity: Option<FindingSeverity>,
    },
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its name.
    pub name: String,
    /// Index of its webhook in [`AlertSet::webhooks`].
    pub webhook: usize,
    /// What it matches.
    pub kind: RuleKind,
    /// The configuration it came from: a reload keeps the window state of a
    /// rule whose configuration did not change.
    pub source: AlertConfig,
}

impl Rule {
    /// Whether its filter has a full-text part (matched by the text index).
    pub fn needs_text(&self) -> bool {
        matches!(&self.kind, RuleKind::Threshold { filter, .. } if filter.text.is_some())
    }
}

/// The checked configuration of alerts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertSet {
    /// The receivers.
    pub webhooks: Vec<Webhook>,
    /// The rules, in configuration order.
    pub rules: Vec<Rule>,
}

/// A configuration error: (key path, sentence).
pub type KeyError = (String, String);

/// Checks `[[webhooks]]` and `[[alerts]]` (reading secret files).
///
/// # Errors
/// The first problem, naming its key (`alerts[2].threshold`).
pub fn compile(webhooks: &[WebhookConfig], alerts: &[AlertConfig]) -> Result<AlertSet, KeyError> {
    if webhooks.len() > WEBHOOKS_MAX {
        return Err(err(
            "webhooks",
            format!(
                "at most {WEBHOOKS_MAX} [[webhooks]], got {}",
                webhooks.len()
            ),
        ));
    }
    if alerts.len() > ALERTS_MAX {
        return Err(err(
            "alerts",
            format!("at most {ALERTS_MAX} [[alerts]], got {}", alerts.len()),
        ));
    }
    let mut set = AlertSet::default();
    for (i, w) in webhooks.iter().enumerate() {
        let hook = webhook(&format!("webhooks[{i}]"), w)?;
        if set.webhooks.iter().any(|h| h.name == hook.name) {
            return Err(err(
                &format!("webhooks[{i}].name"),
                format!("webhook name {:?} is used twice", hook.name),
            ));
        }
        set.webhooks.push(hook);
    }
    for (i, a) in alerts.iter().enumerate() {
        let rule = rule(&format!("alerts[{i}]"), a, &set.webhooks)?;
        if set.rules.iter().any(|r| r.name == rule.name) {
            return Err(err(
                &format!("alerts[{i}].name"),
                format!("alert name {:?} is used twice", rule.name),
            ));
        }
        set.rules.push(rule);
    }
    Ok(set)
}

fn err(key: &str, why: String) -> KeyError {
    (key.to_string(), format!("{key}: {why}"))
}

fn name(at: &str, n: &str) -> Result<(), KeyError> {
    let ok = !n.is_empty()
        && n.len() <= NAME_BYTES_MAX
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err(
            &format!("{at}.name"),
            format!("{n:?} is not a name: 1 to {NAME_BYTES_MAX} letters, digits, '_', '-' or '.'"),
        ))
    }
}

fn range(key: &str, got: u64, min: u64, max: u64) -> Result<(), KeyError> {
    if (min..=max).contains(&got) {
        Ok(())
    } else {
        Err(err(key, format!("must be {min} to {max}, got {got}")))
    }
}

fn webhook(at: &str, w: &WebhookConfig) -> Result<Webhook, KeyError> {
    name(at, &w.name)?;
    check_url(&format!("{at}.url"), &w.url)?;
    range(
        &format!("{at}.timeout_secs"),
        w.timeout_secs,
        1,
        TIMEOUT_SECS_MAX,
    )?;
    range(
        &format!("{at}.backoff_max_secs"),
        w.backoff_max_secs,
        1,
        BACKOFF_MAX_SECS_MAX,
    )?;
    let secret = match (&w.secret, &w.secret_file) {
        (Some(_), Some(_)) => {
            return Err(err(
                &format!("{at}.secret"),
                "give either secret or secret_file, not both".into(),
            ))
        }
        (Some(s), None) => Some(s.as_bytes().to_vec()),
        (None, Some(p)) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                err(
                    &format!("{at}.secret_file"),
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            Some(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
        }
        (None, None) => None,
    };
    match (&secret, w.format) {
        (None, Format::Stele) => {
            return Err(err(
                &format!("{at}.secret"),
                "a webhook of format \"stele\" needs a secret (or secret_file) to sign its \
                 notifications"
                    .into(),
            ))
        }
        (Some(s), _) if s.len() < SECRET_BYTES_MIN => {
            return Err(err(
                &format!("{at}.secret"),
                format!(
                    "the secret is {} bytes; it must be at least {SECRET_BYTES_MIN}",
                    s.len()
                ),
            ))
        }
        _ => {}
    }
    Ok(Webhook {
        name: w.name.clone(),
        url: w.url.clone(),
        secret,
        format: w.format,
        timeout: Duration::from_secs(w.timeout_secs),
        backoff_max: Duration::from_secs(w.backoff_max_secs),
    })
}

fn check_url(key: &str, url: &str) -> Result<(), KeyError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| err(key, format!("{url:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(err(
                key,
                format!("{url:?} must start with http:// or https://"),
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(err(key, format!("{url:?} names no host")));
    }
    Ok(())
}

fn rule(at: &str, a: &AlertConfig, hooks: &[Webhook]) -> Result<Rule, KeyError> {
    name(at, &a.name)?;
    let webhook = hooks
        .iter()
        .position(|h| h.name == a.webhook)
        .ok_or_else(|| {
            let known: Vec<&str> = hooks.iter().map(|h| h.name.as_str()).collect();
            err(
                &format!("{at}.webhook"),
                format!(
                    "no [[webhooks]] entry is named {:?} (known: {known:?})",
                    a.webhook
                ),
            )
        })?;
    let finding = a.finding_kind.is_some() || a.finding_severity.is_some();
    let threshold = a.filter.is_some() || a.threshold.is_some() || a.window.is_some();
    let kind = match (threshold, finding) {
        (true, true) => {
            return Err(err(
                at,
                "give either filter with threshold and window, or finding_kind and/or \
                 finding_severity, not both"
                    .into(),
            ))
        }
        (false, false) => {
            return Err(err(
                at,
                "give either filter with threshold and window, or finding_kind and/or \
                 finding_severity"
                    .into(),
            ))
        }
        (true, false) => threshold_rule(at, a)?,
        (false, true) => finding_rule(at, a)?,
    };
    Ok(Rule {
        name: a.name.clone(),
        webhook,
        kind,
        source: a.clone(),
    })
}

fn threshold_rule(at: &str, a: &AlertConfig) -> Result<RuleKind, KeyError> {
    let filter_text = a.filter.as_deref().ok_or_else(|| {
        err(
            &format!("{at}.filter"),
            "a threshold rule needs a filter (\"\" for every event)".into(),
        )
    })?;
    let (filter, params) =
        parse_filter(filter_text).map_err(|why| err(&format!("{at}.filter"), why))?;
    let threshold = a.threshold.ok_or_else(|| {
        err(
            &format!("{at}.threshold"),
            "a threshold rule needs a threshold (events in one window)".into(),
        )
    })?;
    range(&format!("{at}.threshold"), threshold, 1, THRESHOLD_MAX)?;
    let window = a.window.as_deref().ok_or_else(|| {
        err(
            &format!("{at}.window"),
            "a threshold rule needs a window (\"10m\")".into(),
        )
    })?;
    let secs = parse_window(window).map_err(|why| err(&format!("{at}.window"), why))?;
    Ok(RuleKind::Threshold {
        filter: Box::new(filter),
        params,
        threshold,
        window_us: secs as i64 * 1_000_000,
    })
}

fn finding_rule(at: &str, a: &AlertConfig) -> Result<RuleKind, KeyError> {
    if let Some(k) = &a.finding_kind {
        if k.is_empty() {
            return Err(err(
                &format!("{at}.finding_kind"),
                "must not be empty".into(),
            ));
        }
    }
    let min_severity = match &a.finding_severity {
        None => None,
        Some(s) => Some(FindingSeverity::parse(s).ok_or_else(|| {
            err(
                &format!("{at}.finding_severity"),
                format!("{s:?} is not a severity: low, medium or high"),
            )
        })?),
    };
    Ok(RuleKind::Finding {
        kind: a.finding_kind.clone(),
        min_severity,
    })
}

/// A rule's filter: the listing's parameters, parsed by the listing's
/// parser, without the ones that choose times or pages.
///
/// # Errors
/// The parameter at fault and why.
pub fn parse_filter(text: &str) -> Result<(Filter, Vec<(String, String)>), String> {
    if text.len() > FILTER_BYTES_MAX {
        return Err(format!(
            "is {} bytes; at most {FILTER_BYTES_MAX}",
            text.len()
        ));
    }
    let text = text.strip_prefix('?').unwrap_or(text);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| NOT_IN_FILTER.contains(&k.as_str()))
    {
        return Err(format!(
            "`{k}` has no place in an alert's filter: the window gives the time range"
        ));
    }
    let query = Query::parse(&pairs, 0).map_err(|e| e.to_string())?;
    Ok((query.filter, pairs))
}

/// `<n>s`, `<n>m`, `<n>h` or `<n>d` in seconds, within
/// [`WINDOW_SECS_MIN`]..=[`WINDOW_SECS_MAX`].
///
/// # Errors
/// What is wrong and what is allowed.
pub fn parse_window(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a window: a number and s, m, h or d (\"10m\"), 1s to 1d");
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(per).ok_or_else(bad)?;
    if !(WINDOW_SECS_MIN..=WINDOW_SECS_MAX).contains(&secs) {
        return Err(bad());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str) -> WebhookConfig {
        WebhookConfig {
            name: name.into(),
            url: "https://hooks.example.com/x".into(),
            secret: Some("0123456789abcdef".into()),
            secret_file: None,
            format: Format::Stele,
            timeout_secs: TIMEOUT_SECS_DEFAULT,
            backoff_max_secs: BACKOFF_MAX_SECS_DEFAULT,
        }
    }

    fn threshold(filter: &str, n: u64, window: &str) -> AlertConfig {
        AlertConfig {
            name: "r".into(),
            webhook: "ops".into(),
            filter: Some(filter.into()),
            threshold: Some(n),
            window: Some(window.into()),
            finding_kind: None,
            finding_severity: None,
        }
    }

    fn key_of(r: Result<AlertSet, KeyError>) -> String {
        r.expect_err("refused").0
    }

    #[test]
    fn windows_parse_within_bounds() {
        assert_eq!(parse_window("10m"), Ok(600));
        assert_eq!(parse_window("1d"), Ok(86_400));
        assert_eq!(parse_window("1s"), Ok(1));
        for bad in [
            "",
            "10",
            "m",
            "0s",
            "2d",
            "10 m",
            "1w",
            "-1m",
            "99999999999999999999s",
        ] {
            assert!(parse_window(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_threshold_rule_parses_its_filter_as_the_listing_does() {
        let set = compile(
            &[hook("ops")],
            &[threshold("action=login&status=failure&q=denied", 5, "10m")],
        )
        .unwrap();
        let RuleKind::Threshold {
            filter,
            threshold,
            window_us,
            ..
        } = &set.rules[0].kind
        else {
            panic!("a threshold rule");
        };
        assert_eq!(filter.action.as_deref(), Some("login"));
        assert_eq!(filter.status, Some(crate::event::Status::Failure));
        assert_eq!(filter.text.as_deref(), Some("denied"));
        assert_eq!((*threshold, *window_us), (5, 600_000_000));
        assert!(set.rules[0].needs_text());
    }

    #[test]
    fn bad_rules_name_their_key() {
        let hooks = [hook("ops")];
        let mut unknown = threshold("action=a", 1, "1m");
        unknown.webhook = "nope".into();
        assert_eq!(key_of(compile(&hooks, &[unknown])), "alerts[0].webhook");
        assert_eq!(
            key_of(compile(&hooks, &[threshold("action=a", 0, "1m")])),
            "alerts[0].threshold"
        );
        assert_eq!(
            key_of(compile(&hooks, &[threshold("action=a", 1, "2d")])),
            "alerts[0].window"
        );
        assert_eq!(
            key_of(compile(&hooks, &[threshold("since=1h", 1, "1m")])),
            "alerts[0].filter"
        );
        assert_eq!(
            key_of(compile(&hooks, &[threshold("colour=red", 1, "1m")])),
            "alerts[0].filter"
        );
        let mut both = threshold("action=a", 1, "1m");
        both.finding_kind = Some("new_ip".into());
        assert_eq!(key_of(compile(&hooks, &[both])), "alerts[0]");
        let mut neither = threshold("", 1, "1m");
        (neither.filter, neither.threshold, neither.window) = (None, None, None);
        assert_eq!(key_of(compile(&hooks, &[neither])), "alerts[0]");
        let mut no_window = threshold("action=a", 1, "1m");
        no_window.window = None;
        assert_eq!(key_of(compile(&hooks, &[no_window])), "alerts[0].window");
        let mut sev = threshold("", 1, "1m");
        (sev.filter, sev.threshold, sev.window) = (None, None, None);
        sev.finding_severity = Some("urgent".into());
        assert_eq!(
            key_of(compile(&hooks, &[sev])),
            "alerts[0].finding_severity"
        );
        let twice = [threshold("", 1, "1m"), threshold("", 2, "1m")];
        assert_eq!(key_of(compile(&hooks, &twice)), "alerts[1].name");
    }

    #[test]
    fn bad_webhooks_name_their_key() {
        let mut ftp = hook("ops");
        ftp.url = "ftp://example.com/x".into();
        assert_eq!(key_of(compile(&[ftp], &[])), "webhooks[0].url");
        let mut nohost = hook("ops");
        nohost.url = "/relative".into();
        assert_eq!(key_of(compile(&[nohost], &[])), "webhooks[0].url");
        let mut unsigned = hook("ops");
        unsigned.secret = None;
        assert_eq!(
            key_of(compile(&[unsigned.clone()], &[])),
            "webhooks[0].secret"
        );
        unsigned.format = Format::Slack;
        assert!(compile(&[unsigned], &[]).is_ok(), "slack needs no secret");
        let mut short = hook("ops");
        short.secret = Some("short".into());
        assert_eq!(key_of(compile(&[short], &[])), "webhooks[0].secret");
        let mut slow = hook("ops");
        slow.timeout_secs = 0;
        assert_eq!(key_of(compile(&[slow], &[])), "webhooks[0].timeout_secs");
        let mut missing = hook("ops");
        (missing.secret, missing.secret_file) = (None, Some("/nonexistent/secret".into()));
        assert_eq!(key_of(compile(&[missing], &[])), "webhooks[0].secret_file");
        assert_eq!(
            key_of(compile(&[hook("ops"), hook("ops")], &[])),
            "webhooks[1].name"
        );
        assert_eq!(key_of(compile(&[hook("o p s")], &[])), "webhooks[0].name");
    }

    #[test]
    fn finding_rules_take_a_kind_and_or_a_least_severity() {
        let mut a = threshold("", 1, "1m");
        (a.filter, a.threshold, a.window) = (None, None, None);
        a.finding_severity = Some("medium".into());
        let set = compile(&[hook("ops")], &[a]).unwrap();
        assert_eq!(
            set.rules[0].kind,
            RuleKind::Finding {
                kind: None,
                min_severity: Some(FindingSeverity::Medium)
            }
        );
        assert!(FindingSeverity::Low < FindingSeverity::High);
    }
}
