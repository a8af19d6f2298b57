//! problem+json (RFC 9457): every error the API answers.
//!
//! Owns the closed set of problem types ([`Kind`]): each has one `type` URI,
//! one title and one status, so a handler names a kind and writes the detail,
//! never a status code or a URI of its own. Owns the mapping of
//! [`QueryError`] to problems too.
//!
//! Invariants:
//! 1. Every `type` is `https://stele.dev/problems/{slug}`; a slug never
//!    changes once released (clients match on it).
//! 2. The body is `{type, title, status, detail}` plus the kind's extra
//!    members; `Content-Type: application/problem+json`.

use super::{full, Resp};
use crate::query::QueryError;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// Every problem type the API answers with: slug, title and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidParameter,
    InvalidCursor,
    InvalidQuery,
    Gone,
    StorageFailure,
    SegmentDamaged,
    RequestTimeout,
    Unauthorized,
    RateLimited,
    Forbidden,
    LogUnavailable,
    UriTooLong,
    HeadersTooLarge,
    CredentialsInUrl,
    DuplicateAuthorization,
    Unhealthy,
    NoCheckpoint,
    NotReady,
    MethodNotAllowed,
    NoSuchRoute,
    NoSuchEvent,
    NoSuchHold,
    NoSuchField,
    NoSuchRun,
    AmbiguousId,
    Internal,
    UnsupportedMediaType,
    BodyTooLarge,
    InvalidBody,
    InvalidJson,
    InvalidBatchSize,
    InvalidEvents,
    IdConflict,
    DiskFull,
    TenantForbidden,
    InvalidHold,
    HoldExists,
    HoldInConfig,
    TooManyKeyStreams,
    TooManyStreams,
}

impl Kind {
    /// Every kind, for tests and documentation.
    pub const ALL: [Kind; 40] = [
        Kind::InvalidParameter,
        Kind::InvalidCursor,
        Kind::InvalidQuery,
        Kind::Gone,
        Kind::StorageFailure,
        Kind::SegmentDamaged,
        Kind::RequestTimeout,
        Kind::Unauthorized,
        Kind::RateLimited,
        Kind::Forbidden,
        Kind::LogUnavailable,
        Kind::UriTooLong,
        Kind::HeadersTooLarge,
        Kind::CredentialsInUrl,
        Kind::DuplicateAuthorization,
        Kind::Unhealthy,
        Kind::NoCheckpoint,
        Kind::NotReady,
        Kind::MethodNotAllowed,
        Kind::NoSuchRoute,
        Kind::NoSuchEvent,
        Kind::NoSuchHold,
        Kind::NoSuchField,
        Kind::NoSuchRun,
        Kind::AmbiguousId,
        Kind::Internal,
        Kind::UnsupportedMediaType,
        Kind::BodyTooLarge,
        Kind::InvalidBody,
        Kind::InvalidJson,
        Kind::InvalidBatchSize,
        Kind::InvalidEvents,
        Kind::IdConflict,
        Kind::DiskFull,
        Kind::TenantForbidden,
        Kind::InvalidHold,
        Kind::HoldExists,
        Kind::HoldInConfig,
        Kind::TooManyKeyStreams,
        Kind::TooManyStreams,
    ];

    /// The status, the slug of the `type` URI and the title.
    pub const fn describe(self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Kind::InvalidParameter => (
                S::BAD_REQUEST,
                "invalid-parameter",
                "Invalid query parameter",
            ),
            Kind::InvalidCursor => (S::BAD_REQUEST, "invalid-cursor", "Invalid cursor"),
            Kind::InvalidQuery => (S::BAD_REQUEST, "invalid-query", "Invalid full-text query"),
            Kind::Gone => (S::GONE, "gone", "Dropped by retention"),
            Kind::StorageFailure => (
                S::INTERNAL_SERVER_ERROR,
                "storage-failure",
                "Storage failure",
            ),
            Kind::SegmentDamaged => (
                S::INTERNAL_SERVER_ERROR,
                "segment-damaged",
                "Damaged segment",
            ),
            Kind::RequestTimeout => (
                S::SERVICE_UNAVAILABLE,
                "request-timeout",
                "Request timed out",
            ),
            Kind::Unauthorized => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Kind::RateLimited => (S::TOO_MANY_REQUESTS, "rate-limited", "Rate limit exceeded"),
            Kind::Forbidden => (S::FORBIDDEN, "forbidden", "Forbidden"),
            Kind::LogUnavailable => (
                S::SERVICE_UNAVAILABLE,
                "log-unavailable",
                "The log cannot accept events",
            ),
            Kind::UriTooLong => (S::URI_TOO_LONG, "uri-too-long", "Request target too long"),
            Kind::HeadersTooLarge => (
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request headers too large",
            ),
            Kind::CredentialsInUrl => (
                S::BAD_REQUEST,
                "credentials-in-url",
                "Credentials in the URL",
            ),
            Kind::DuplicateAuthorization => (
                S::BAD_REQUEST,
                "duplicate-authorization",
                "More than one Authorization header",
            ),
            Kind::Unhealthy => (S::SERVICE_UNAVAILABLE, "unhealthy", "Unhealthy"),
            Kind::NoCheckpoint => (S::NOT_FOUND, "no-checkpoint", "No checkpoint yet"),
            Kind::NotReady => (S::SERVICE_UNAVAILABLE, "not-ready", "Not ready"),
            Kind::MethodNotAllowed => (
                S::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Kind::NoSuchRoute => (S::NOT_FOUND, "not-found", "No such route"),
            Kind::NoSuchEvent => (S::NOT_FOUND, "not-found", "No such event"),
            Kind::NoSuchHold => (S::NOT_FOUND, "not-found", "No such hold"),
            Kind::NoSuchField => (S::NOT_FOUND, "not-found", "No such field"),
            Kind::NoSuchRun => (S::NOT_FOUND, "not-found", "No such run"),
            Kind::AmbiguousId => (S::CONFLICT, "ambiguous-id", "Ambiguous event id"),
            Kind::Internal => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
            Kind::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Kind::BodyTooLarge => (
                S::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
            ),
            Kind::InvalidBody => (S::BAD_REQUEST, "invalid-body", "Unreadable request body"),
            Kind::InvalidJson => (S::BAD_REQUEST, "invalid-json", "Invalid JSON"),
            Kind::InvalidBatchSize => (
                S::BAD_REQUEST,
                "invalid-batch-size",
                "Invalid number of events",
            ),
            Kind::InvalidEvents => (S::BAD_REQUEST, "invalid-events", "Invalid events"),
            Kind::IdConflict => (S::CONFLICT, "id-conflict", "Event id conflict"),
            Kind::DiskFull => (S::INSUFFICIENT_STORAGE, "disk-full", "Disk full"),
            Kind::TenantForbidden => (S::FORBIDDEN, "tenant-forbidden", "Tenant not allowed"),
            Kind::InvalidHold => (S::BAD_REQUEST, "invalid-hold", "Invalid legal hold"),
            Kind::HoldExists => (S::CONFLICT, "hold-exists", "Legal hold exists"),
            Kind::HoldInConfig => (
                S::CONFLICT,
                "hold-in-config",
                "Legal hold set in the configuration",
            ),
            Kind::TooManyKeyStreams => (
                S::TOO_MANY_REQUESTS,
                "too-many-key-streams",
                "Too many streams for this key",
            ),
            Kind::TooManyStreams => (
                S::SERVICE_UNAVAILABLE,
                "too-many-streams",
                "Too many streams",
            ),
        }
    }

    /// The HTTP status of this kind.
    pub const fn status(self) -> StatusCode {
        self.describe().0
    }

    /// The `type` URI.
    pub fn uri(self) -> String {
        format!("https://stele.dev/problems/{}", self.describe().1)
    }
}

/// One problem response: a kind, a detail sentence, extra members and extra
/// headers (`Allow`, `Retry-After`, `WWW-Authenticate`).
#[derive(Debug)]
pub struct Problem {
    /// What went wrong, as a closed type.
    pub kind: Kind,
    /// The sentence for this occurrence.
    pub detail: String,
    /// Extra members (`field`, `limit`, …): an object.
    extra: Value,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem without extra members.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            detail: detail.into(),
            extra: json!({}),
            headers: Vec::new(),
        }
    }

    /// Adds the members of `extra` (an object) to the body.
    pub fn with(mut self, extra: Value) -> Problem {
        self.extra = extra;
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Problem {
        self.headers.push((name, value));
        self
    }

    /// The problem+json response.
    pub fn response(self) -> Resp {
        let (status, _, title) = self.kind.describe();
        let mut body = json!({
            "type": self.kind.uri(),
            "title": title,
            "status": status.as_u16(),
            "detail": self.detail,
        });
        if let (Value::Object(b), Value::Object(e)) = (&mut body, self.extra) {
            b.extend(e);
        }
        let mut resp = Response::builder()
            .status(status)
            .header("content-type", "application/problem+json")
            .body(full(body.to_string()))
            .expect("valid response");
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

impl From<Problem> for Resp {
    fn from(p: Problem) -> Resp {
        p.response()
    }
}

/// A problem response with extra members (the common case in handlers).
pub(super) fn problem(kind: Kind, detail: String, extra: Value) -> Resp {
    Problem::new(kind, detail).with(extra).response()
}

/// 500 `internal`: a task that panicked or was cancelled, a file that could
/// not be written.
pub(super) fn internal(detail: String) -> Resp {
    problem(Kind::Internal, detail, json!({}))
}

/// The problem for a query that failed.
pub(super) fn query_problem(e: QueryError) -> Resp {
    match &e {
        // A parameter without a name (`?=x`) has no `field` to name.
        QueryError::BadParam { param, .. } if param.is_empty() => problem(
            Kind::InvalidParameter,
            "a query parameter has an empty name (`=value`, or a stray `&=`): remove it".into(),
            json!({}),
        ),
        QueryError::BadParam { param, .. } => problem(
            Kind::InvalidParameter,
            e.to_string(),
            json!({ "field": param }),
        ),
        QueryError::BadCursor(_) => problem(
            Kind::InvalidCursor,
            e.to_string(),
            json!({ "field": "cursor" }),
        ),
        QueryError::BadText(_) => {
            problem(Kind::InvalidQuery, e.to_string(), json!({ "field": "q" }))
        }
        QueryError::Gone { first_seq, .. } => {
            problem(Kind::Gone, e.to_string(), json!({ "first_seq": first_seq }))
        }
        QueryError::Log(crate::log::Error::Io { path, source, .. }) => {
            // Name the segment (not the host's path) for the operator.
            let segment = path.file_name().map(|n| n.to_string_lossy().into_owned());
            problem(
                Kind::StorageFailure,
                format!(
                    "could not read segment {} ({source}): the answer would be incomplete; \
                     see /readyz and the daemon's log",
                    segment.as_deref().unwrap_or("?")
                ),
                json!({ "segment": segment }),
            )
        }
        QueryError::Log(crate::log::Error::Corruption {
            path, seq, detail, ..
        }) => {
            // A damaged or changed segment: its events are never served as
            // genuine. Name the segment (not the host's path).
            let segment = path.file_name().map(|n| n.to_string_lossy().into_owned());
            problem(
                Kind::SegmentDamaged,
                format!(
                    "segment {} is damaged ({detail}): its events are not served; see /readyz \
                     and run `stele verify`",
                    segment.as_deref().unwrap_or("?")
                ),
                json!({ "segment": segment, "seq": seq }),
            )
        }
        QueryError::Log(crate::log::Error::Dropped { first_seq, .. }) => {
            // Retention dropped an event between the index answering and
            // the log being read: gone, like a cursor into dropped data.
            problem(
                Kind::Gone,
                format!("{e}; run the query again"),
                json!({ "first_seq": first_seq }),
            )
        }
        QueryError::Index(_) | QueryError::Log(_) => {
            problem(Kind::StorageFailure, e.to_string(), json!({}))
        }
        QueryError::Render(_) => internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn slugs_are_kebab_case_and_titles_unique_per_kind() {
        let mut seen = std::collections::HashSet::new();
        for k in Kind::ALL {
            let (status, slug, title) = k.describe();
            assert!(
                slug.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{k:?}"
            );
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{k:?}"
            );
            assert!(seen.insert((slug, title)), "{k:?} repeats {slug} {title}");
        }
    }

    #[tokio::test]
    async fn renders_rfc_9457_with_extras_and_headers() {
        let r = Problem::new(Kind::MethodNotAllowed, "no")
            .with(json!({ "limit": 3 }))
            .header(hyper::header::ALLOW, HeaderValue::from_static("GET"))
            .response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "GET");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({
                "type": "https://stele.dev/problems/method-not-allowed",
                "title": "Method not allowed",
                "status": 405,
                "detail": "no",
                "limit": 3,
            })
        );
    }

    /// A query that races retention (an event dropped between the index
    /// answering and the log being read) is told the data is gone (410),
    /// not that storage failed: nothing is wrong with the disk.
    #[tokio::test]
    async fn a_seq_dropped_under_a_query_is_gone_not_a_storage_failure() {
        let e = QueryError::Log(crate::log::Error::Dropped {
            seq: 7,
            first_seq: 40,
        });
        let r = query_problem(e);
        assert_eq!(r.status(), StatusCode::GONE);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "https://stele.dev/problems/gone");
        assert_eq!(v["first_seq"], 40);
    }
}
