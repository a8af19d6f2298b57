//! Presenting TOML errors: turns a toml schema error into a message that
//! names the key, the line and column, with an excerpt of the offending line,
//! in an operator's words.
//!
//! Owns finding which key a serde error is about (by deserializing each key
//! alone) and rewording serde's messages. Never reads files, the environment
//! or flags, and never decides what is valid: that is [`Config`]'s
//! deserialization and [`Config::validate`].

use super::{Config, ConfigError};
use std::path::Path;

/// The sections of the file (for error messages).
const SECTIONS: &[&str] = &["limits", "log", "index", "retention", "seal"];

/// Every key path of `table` holding a value (arrays count as values).
pub(super) fn collect_leaves(table: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<String>) {
    for (k, v) in table {
        prefix.push(k.clone());
        match v {
            toml::Value::Table(t) => collect_leaves(t, prefix, out),
            _ => out.push(prefix.join(".")),
        }
        prefix.pop();
    }
}

/// A schema error of valid TOML: we find which key (by deserializing each
/// key alone), toml's text deserializer says where (when it reports the same
/// problem), and we say what is allowed.
pub(super) fn key_error(
    path: &Path,
    text: &str,
    table: &toml::Table,
    e: &toml::de::Error,
) -> ConfigError {
    let mut found = Vec::new();
    locate(table, &mut Vec::new(), &mut found);
    let key = found
        .iter()
        .find(|(_, m)| m == e.message())
        .or(found.first())
        .map(|(k, _)| k.clone());
    let span = toml::from_str::<Config>(text)
        .err()
        .filter(|t| t.message() == e.message())
        .and_then(|t| t.span());
    let (position, excerpt) = match span {
        Some(span) => {
            let (p, x) = excerpt(text, span);
            (Some(p), x)
        }
        None => (None, String::new()),
    };
    ConfigError::Key {
        path: path.to_path_buf(),
        message: readable(e.message(), key.as_deref()),
        key,
        position,
        excerpt,
    }
}

/// Whether `value` alone at `path` deserializes; the error message if not.
fn probe(path: &[String], value: &toml::Value) -> Option<String> {
    let mut v = value.clone();
    for k in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert(k.clone(), v);
        v = toml::Value::Table(t);
    }
    v.try_into::<Config>()
        .err()
        .map(|e| e.message().to_string())
}

/// The deepest key paths whose value fails alone, with the message.
fn locate(table: &toml::Table, prefix: &mut Vec<String>, found: &mut Vec<(String, String)>) {
    for (k, v) in table {
        prefix.push(k.clone());
        if let Some(message) = probe(prefix, v) {
            let before = found.len();
            if let toml::Value::Table(t) = v {
                // The table itself is fine (an empty one deserializes): the
                // fault is in one of its keys.
                if probe(prefix, &toml::Value::Table(toml::Table::new())).is_none() {
                    locate(t, prefix, found);
                }
            }
            if found.len() == before {
                found.push((prefix.join("."), message));
            }
        }
        prefix.pop();
    }
}

/// 1-based (line, column) of `span.start`, and that line with a caret
/// underline, as toml prints them.
fn excerpt(text: &str, span: std::ops::Range<usize>) -> ((usize, usize), String) {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_no = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..line_end].trim_end_matches('\r');
    let end = span.end.clamp(start, line_end);
    let carets = text[start..end].chars().count().max(1);
    let gutter = " ".repeat(line_no.to_string().len());
    let excerpt = format!(
        "{gutter} |\n{line_no} | {line}\n{gutter} | {}{}",
        " ".repeat(column - 1),
        "^".repeat(carets)
    );
    ((line_no, column), excerpt)
}

/// serde's message in an operator's words: "key" for "field", the keys a
/// section accepts, types as TOML values.
fn readable(message: &str, key: Option<&str>) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once('`') {
            let known = backticked(expected);
            let section = match key {
                Some(k) if k == name => None,
                Some(k) => Some(k.strip_suffix(&format!(".{name}")).unwrap_or(k)),
                None => None,
            };
            let known = known
                .iter()
                .map(|k| match section {
                    None if SECTIONS.contains(&k.as_str()) => format!("[{k}]"),
                    _ => k.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            return match section {
                None => format!("unknown key `{name}`; the top level has: {known}"),
                Some(s) => format!("unknown key `{name}`; [{s}] has: {known}"),
            };
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((name, expected)) = rest.split_once('`') {
            return format!(
                "unknown value \"{name}\"; expected one of: {}",
                backticked(expected).join(", ")
            );
        }
    }
    if message == "invalid socket address syntax" {
        return format!(
            "{message}; expected \"ADDRESS:PORT\" such as \"127.0.0.1:7070\" or \"[::1]:7070\""
        );
    }
    if let Some((what, expected)) = message.rsplit_once(", expected ") {
        let expected = match expected {
            "usize" | "u64" => "a non-negative whole number".to_string(),
            "u32" => "a whole number from 0 to 4294967295".to_string(),
            "i64" => "a whole number".to_string(),
            "path string" => "a path (a string)".to_string(),
            e if e.starts_with("struct ") => "a table".to_string(),
            e => e.to_string(),
        };
        return format!("{what}; expected {expected}");
    }
    message.to_string()
}

/// The `backticked` words of serde's "expected one of `a`, `b`".
pub(super) fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}
