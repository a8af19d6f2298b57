//! What kind of activity an event is, for risk rules and detectors: failed
//! authentication, a privilege change, an error. One place, so the risk score,
//! the detectors and their documentation agree.
//!
//! Matching is on the event's own words: `action` and `category` are split
//! into tokens at anything that is not a letter or digit (`user.role_granted`
//! → `user`, `role`, `granted`) and compared ASCII case-insensitively, so
//! `payroll` never passes for `role`. Never looks at metadata or free text.

use crate::event::{Event, Severity, Status};

/// Tokens that make an action an authentication attempt.
const AUTH_TOKENS: &[&str] = &[
    "login",
    "logon",
    "signin",
    "auth",
    "authenticate",
    "authentication",
    "password",
    "mfa",
    "otp",
    "2fa",
    "sso",
];
/// Tokens that say the attempt failed, whatever the `status`.
const FAILED_TOKENS: &[&str] = &["failed", "failure", "fail", "denied", "rejected", "invalid"];
/// Token stems that make an action a change of privileges.
const PRIVILEGE_STEMS: &[&str] = &[
    "permission",
    "privilege",
    "role",
    "grant",
    "revoke",
    "sudo",
    "escalat",
    "admin",
    "acl",
];

/// The tokens of `s` (runs of letters and digits), compared below ASCII
/// case-insensitively with the lists (lower case ASCII): this runs for every
/// event on the ingest path and again in the detectors, so nothing is
/// allocated.
fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
}

/// Whether `token` is one of `list`, ASCII case-insensitively.
fn one_of(token: &str, list: &[&str]) -> bool {
    list.iter().any(|w| token.eq_ignore_ascii_case(w))
}

/// Whether `token` starts with one of `stems`, ASCII case-insensitively.
fn starts_with_one_of(token: &str, stems: &[&str]) -> bool {
    let token = token.as_bytes();
    stems
        .iter()
        .any(|s| token.len() >= s.len() && token[..s.len()].eq_ignore_ascii_case(s.as_bytes()))
}

/// Whether the event is a failed authentication: an authentication action
/// (`login`, `auth`, `signin`, …) that failed (`status=failure`, or the action
/// says so: `login_failed`, `auth.denied`).
pub fn is_auth_failure(ev: &Event) -> bool {
    let mut auth = false;
    let mut failed = false;
    for t in tokens(&ev.action) {
        auth |= one_of(t, AUTH_TOKENS);
        failed |= one_of(t, FAILED_TOKENS);
    }
    auth && (failed || ev.status == Some(Status::Failure))
}

/// Whether the event changes someone's privileges: its action or category has
/// a token starting with `permission`, `privilege`, `role`, `grant`, `revoke`,
/// `sudo`, `escalat`, `admin` or `acl` (`role_granted`, `permissions.update`,
/// `user.promote_admin`). Failed attempts count too: they are worth a look.
pub fn is_privilege_change(ev: &Event) -> bool {
    tokens(&ev.action)
        .chain(ev.category.iter().flat_map(|c| tokens(c)))
        .any(|t| starts_with_one_of(t, PRIVILEGE_STEMS))
}

/// Whether the event is an error: `status=failure`, or severity `error` or
/// `critical` (the two definitions of the error rate, taken together).
pub fn is_error(ev: &Event) -> bool {
    ev.status == Some(Status::Failure) || ev.severity.is_some_and(|s| s >= Severity::Error)
}

/// The user an event is about, for per-user rules: `user_id`, else `actor`.
pub fn user_of(ev: &Event) -> Option<&str> {
    ev.user_id.as_deref().or(ev.actor.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, category: Option<&str>, status: Option<Status>) -> Event {
        Event {
            action: action.into(),
            category: category.map(Into::into),
            status,
            ..Event::default()
        }
    }

    #[test]
    fn failed_authentication_needs_an_auth_word_and_a_failure() {
        for (action, status) in [
            ("login_failed", None),
            ("Login", Some(Status::Failure)),
            ("auth.denied", None),
            ("user.signin", Some(Status::Failure)),
            ("password-reset-invalid", None),
        ] {
            assert!(is_auth_failure(&ev(action, None, status)), "{action}");
        }
        for (action, status) in [
            ("login", Some(Status::Success)),
            ("login", None),
            ("export_failed", None),
            ("blogin_failed", None),
            ("author.update", Some(Status::Failure)),
        ] {
            assert!(!is_auth_failure(&ev(action, None, status)), "{action}");
        }
    }

    #[test]
    fn privilege_changes_match_whole_token_stems() {
        for (action, category) in [
            ("role_granted", None),
            ("update", Some("permissions")),
            ("user.promote_admin", None),
            ("ACL.Change", None),
            ("privilege-escalation", None),
        ] {
            assert!(is_privilege_change(&ev(action, category, None)), "{action}");
        }
        for action in ["payroll.run", "console_open", "enrolled", "migrate"] {
            assert!(!is_privilege_change(&ev(action, None, None)), "{action}");
        }
    }

    #[test]
    fn errors_are_failures_or_error_severities() {
        assert!(is_error(&ev("x", None, Some(Status::Failure))));
        let mut e = ev("x", None, None);
        e.severity = Some(Severity::Critical);
        assert!(is_error(&e));
        e.severity = Some(Severity::Warning);
        assert!(!is_error(&e));
    }
}
