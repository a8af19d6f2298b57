//! What the events must match (`Filter`) and in which order they come (`Order`).
//!
//! The query model, independent of any index: the full-text index (`index::text`)
//! turns a filter into a tantivy query, the live stream evaluates it in memory
//! ([`Filter::matches_fields`]), and a cursor is bound to it by
//! [`Filter::fingerprint_into`]. The exact-match filters follow the field table
//! (`event::FIELDS`): every row with a filter parameter has a slot here
//! ([`Filter::eq_value`], [`Filter::eq_slot`]), which the tests check.

use crate::event::{self, FieldValue, Phase, Severity, Source, Status, StoredEvent};

/// Filters shared by listing, search and stats. All present filters must match (AND).
///
/// Keyword values match ignoring letter case ([`fold_case`]), except `tenant` and
/// `tenants`, which are exact: tenants are namespaces (ids are unique per tenant) and an
/// API key's scope names them exactly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Exact tenant.
    pub tenant: Option<String>,
    /// The tenant is one of these (an API key's scope); an empty list
    /// matches nothing, events without a tenant never match.
    pub tenants: Option<Vec<String>>,
    /// Exact action.
    pub action: Option<String>,
    /// Exact category.
    pub category: Option<String>,
    /// Exact source.
    pub source: Option<Source>,
    /// Exact status.
    pub status: Option<Status>,
    /// Exact severity.
    pub severity: Option<Severity>,
    /// Severity at least this (by `Severity`'s order); events without a severity never match.
    pub min_severity: Option<Severity>,
    /// Exact entity type.
    pub entity_type: Option<String>,
    /// Exact entity id.
    pub entity_id: Option<String>,
    /// Exact user id.
    pub user_id: Option<String>,
    /// Exact user name.
    pub user_name: Option<String>,
    /// Exact session id.
    pub session_id: Option<String>,
    /// Exact correlation id.
    pub correlation_id: Option<String>,
    /// Exact IP address (in its stored, normalised text form).
    pub ip: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact `ingested_by` (the provenance's API key id, `loopback`, `cli` or
    /// `stele`); events stored in format version 1 have none and never match.
    pub ingested_by: Option<String>,
    /// Risk score in this range.
    pub risk_score: Option<NumRange>,
    /// Duration (ms) in this range.
    pub duration_ms: Option<NumRange>,
    /// Exact process name.
    pub process_name: Option<String>,
    /// Exact process run id.
    pub process_id: Option<String>,
    /// Exact batch operation id.
    pub batch_id: Option<String>,
    /// Exact lifecycle phase.
    pub phase: Option<Phase>,
    /// One of the event's computed risk rules is this one.
    pub risk_rules: Option<String>,
    /// Event time (unix µs, see [`event_time`]) at or after this.
    pub since: Option<i64>,
    /// Event time (unix µs) strictly before this.
    pub until: Option<i64>,
    /// A full-text query in tantivy query syntax (words are ANDed). An empty or blank
    /// string is no text filter.
    pub text: Option<String>,
    /// Whether the events Stele writes itself (`ingested_by = "stele"`: its
    /// `audit_access` records) take part; see [`Filter::own_records`].
    pub stele_records: OwnRecords,
}

/// What a query does with the events Stele writes itself (`ingested_by =
/// "stele"`, such as the `audit_access` record of every read): they would
/// crowd listings and make a dashboard's totals grow on each refresh, so
/// reads leave them out unless asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OwnRecords {
    /// Left out (listings, search, statistics, streams), unless the filter
    /// names them (`ingested_by`, `category=audit_access`).
    #[default]
    Exclude,
    /// Taken like any other event (exports, or `stele_records=include`).
    Include,
    /// Only them.
    Only,
}

impl OwnRecords {
    /// `exclude`, `include` or `only`, as the `stele_records` parameter spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnRecords::Exclude => "exclude",
            OwnRecords::Include => "include",
            OwnRecords::Only => "only",
        }
    }
}

/// The slot of one exact-match filter, typed as the field is.
#[derive(Debug)]
pub enum EqSlot<'a> {
    /// An identifier (or IP address) compared as text.
    Text(&'a mut Option<String>),
    /// A source.
    Source(&'a mut Option<Source>),
    /// A status.
    Status(&'a mut Option<Status>),
    /// A severity.
    Severity(&'a mut Option<Severity>),
    /// A lifecycle phase.
    Phase(&'a mut Option<Phase>),
    /// An integer field's range.
    Range(&'a mut Option<NumRange>),
}

/// An inclusive range of a non-negative integer field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumRange {
    /// Smallest value that matches.
    pub lo: u64,
    /// Largest value that matches (`lo <= hi`).
    pub hi: u64,
}

impl NumRange {
    /// Whether `v` is in the range.
    pub fn contains(self, v: u64) -> bool {
        (self.lo..=self.hi).contains(&v)
    }
}

/// A keyword value as the index holds it: letters in lower case (each character's
/// Unicode lower case, as tantivy's `LowerCaser` does; ASCII-only text by the ASCII
/// rule). Filters and the live stream compare folded values.
pub fn fold_case(s: &str) -> std::borrow::Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(s.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(s)
        }
    } else {
        std::borrow::Cow::Owned(s.chars().flat_map(char::to_lowercase).collect())
    }
}

impl Filter {
    /// The value the exact-match filter of parameter `param` (a field table row's
    /// `filter`) wants, as the field's text; `None` when not set (or `param` is not an
    /// exact-match parameter).
    pub fn eq_value(&self, param: &str) -> Option<&str> {
        match param {
            "action" => self.action.as_deref(),
            "actor" => self.actor.as_deref(),
            "tenant" => self.tenant.as_deref(),
            "category" => self.category.as_deref(),
            "source" => self.source.map(Source::as_str),
            "status" => self.status.map(Status::as_str),
            "severity" => self.severity.map(Severity::as_str),
            "entity_type" => self.entity_type.as_deref(),
            "entity_id" => self.entity_id.as_deref(),
            "user_id" => self.user_id.as_deref(),
            "user_name" => self.user_name.as_deref(),
            "session_id" => self.session_id.as_deref(),
            "correlation_id" => self.correlation_id.as_deref(),
            "ip" => self.ip.as_deref(),
            "ingested_by" => self.ingested_by.as_deref(),
            "process_name" => self.process_name.as_deref(),
            "process_id" => self.process_id.as_deref(),
            "batch_id" => self.batch_id.as_deref(),
            "phase" => self.phase.map(Phase::as_str),
            "risk_rules" => self.risk_rules.as_deref(),
            _ => None,
        }
    }

    /// What this filter does with Stele's own events: as `stele_records` says,
    /// except that a filter naming them explicitly (any `ingested_by`, or a category
    /// reserved for them: `audit_access`, `stele.finding`, …) is never narrowed further
    /// by the default.
    pub fn own_records(&self) -> OwnRecords {
        let named = self.ingested_by.is_some()
            || self
                .category
                .as_deref()
                .is_some_and(event::is_reserved_kind);
        match self.stele_records {
            OwnRecords::Exclude if named => OwnRecords::Include,
            rule => rule,
        }
    }

    /// The range the filter of parameter `param` (an integer field's) wants.
    pub fn range_value(&self, param: &str) -> Option<NumRange> {
        match param {
            "risk_score" => self.risk_score,
            "duration_ms" => self.duration_ms,
            _ => None,
        }
    }

    /// The slot of the exact-match filter of parameter `param`, to set it.
    pub fn eq_slot(&mut self, param: &str) -> Option<EqSlot<'_>> {
        Some(match param {
            "action" => EqSlot::Text(&mut self.action),
            "actor" => EqSlot::Text(&mut self.actor),
            "tenant" => EqSlot::Text(&mut self.tenant),
            "category" => EqSlot::Text(&mut self.category),
            "source" => EqSlot::Source(&mut self.source),
            "status" => EqSlot::Status(&mut self.status),
            "severity" => EqSlot::Severity(&mut self.severity),
            "entity_type" => EqSlot::Text(&mut self.entity_type),
            "entity_id" => EqSlot::Text(&mut self.entity_id),
            "user_id" => EqSlot::Text(&mut self.user_id),
            "user_name" => EqSlot::Text(&mut self.user_name),
            "risk_score" => EqSlot::Range(&mut self.risk_score),
            "duration_ms" => EqSlot::Range(&mut self.duration_ms),
            "session_id" => EqSlot::Text(&mut self.session_id),
            "correlation_id" => EqSlot::Text(&mut self.correlation_id),
            "ip" => EqSlot::Text(&mut self.ip),
            "ingested_by" => EqSlot::Text(&mut self.ingested_by),
            "process_name" => EqSlot::Text(&mut self.process_name),
            "process_id" => EqSlot::Text(&mut self.process_id),
            "batch_id" => EqSlot::Text(&mut self.batch_id),
            "phase" => EqSlot::Phase(&mut self.phase),
            "risk_rules" => EqSlot::Text(&mut self.risk_rules),
            _ => return None,
        })
    }

    /// Whether a stored event matches every filter except the full-text
    /// `text` (evaluated here in memory, for the live stream; listings and
    /// searches go through the index).
    pub fn matches_fields(&self, e: &StoredEvent) -> bool {
        for spec in event::FIELDS {
            let Some(param) = spec.filter else { continue };
            if let Some(want) = self.eq_value(param) {
                let same = match ((spec.get)(e), spec.indexed) {
                    (FieldValue::Str(have), event::Indexed::ExactKeyword) => have == want,
                    (FieldValue::Str(have), _) => fold_case(have) == fold_case(want),
                    (FieldValue::Labels(have), _) => {
                        have.iter().any(|h| fold_case(h) == fold_case(want))
                    }
                    _ => false,
                };
                if !same {
                    return false;
                }
            }
            if let Some(range) = self.range_value(param) {
                match (spec.get)(e) {
                    FieldValue::U64(v) if range.contains(v) => {}
                    _ => return false,
                }
            }
        }
        let own = e
            .provenance
            .as_ref()
            .is_some_and(|p| p.ingested_by == event::INGESTED_BY_STELE);
        match self.own_records() {
            OwnRecords::Exclude if own => return false,
            OwnRecords::Only if !own => return false,
            _ => {}
        }
        let t = event_time(e);
        self.tenants.as_ref().is_none_or(|ts| {
            e.event
                .tenant
                .as_ref()
                .is_some_and(|t| ts.iter().any(|x| x == t))
        }) && self
            .min_severity
            .is_none_or(|m| e.event.severity.is_some_and(|s| s >= m))
            && self.since.is_none_or(|s| t >= s)
            && self.until.is_none_or(|u| t < u)
    }

    /// Appends the filter's fingerprint encoding to `out`: the input a cursor's
    /// fingerprint hashes, so that a cursor only continues the query it came from.
    ///
    /// Every field of the filter, in declaration order, as its name, then `0x00` when
    /// absent or `0x01` and its value: a string (enums by their wire name) as its
    /// length (u32 big endian) and UTF-8 bytes, a time as i64 big endian, a range as its
    /// two bounds (u64 big endian), a tenant list
    /// as its length (u32 big endian) and each tenant as a string. Names and lengths
    /// make it unambiguous; it never depends on `Debug` output.
    pub fn fingerprint_into(&self, out: &mut Vec<u8>) {
        // Destructured so that a new field does not compile until it is encoded.
        let Filter {
            tenant,
            tenants,
            action,
            category,
            source,
            status,
            severity,
            min_severity,
            entity_type,
            entity_id,
            user_id,
            user_name,
            session_id,
            correlation_id,
            ip,
            actor,
            ingested_by,
            risk_score,
            duration_ms,
            process_name,
            process_id,
            batch_id,
            phase,
            risk_rules,
            since,
            until,
            text,
            stele_records,
        } = self;
        fn str_(out: &mut Vec<u8>, s: &str) {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        fn field(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
            str_(out, name);
            match value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    str_(out, v);
                }
            }
        }
        fn time(out: &mut Vec<u8>, name: &str, value: Option<i64>) {
            str_(out, name);
            match value {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        fn range(out: &mut Vec<u8>, name: &str, value: Option<NumRange>) {
            str_(out, name);
            match value {
                None => out.push(0),
                Some(r) => {
                    out.push(1);
                    out.extend_from_slice(&r.lo.to_be_bytes());
                    out.extend_from_slice(&r.hi.to_be_bytes());
                }
            }
        }
        field(out, "tenant", tenant.as_deref());
        str_(out, "tenants");
        match tenants {
            None => out.push(0),
            Some(ts) => {
                out.push(1);
                out.extend_from_slice(&(ts.len() as u32).to_be_bytes());
                for t in ts {
                    str_(out, t);
                }
            }
        }
        field(out, "action", action.as_deref());
        field(out, "category", category.as_deref());
        field(out, "source", source.map(Source::as_str));
        field(out, "status", status.map(Status::as_str));
        field(out, "severity", severity.map(Severity::as_str));
        field(out, "min_severity", min_severity.map(Severity::as_str));
        field(out, "entity_type", entity_type.as_deref());
        field(out, "entity_id", entity_id.as_deref());
        field(out, "user_id", user_id.as_deref());
        field(out, "session_id", session_id.as_deref());
        field(out, "correlation_id", correlation_id.as_deref());
        field(out, "user_name", user_name.as_deref());
        field(out, "ip", ip.as_deref());
        field(out, "actor", actor.as_deref());
        field(out, "ingested_by", ingested_by.as_deref());
        range(out, "risk_score", *risk_score);
        range(out, "duration_ms", *duration_ms);
        field(out, "process_name", process_name.as_deref());
        field(out, "process_id", process_id.as_deref());
        field(out, "batch_id", batch_id.as_deref());
        field(out, "phase", phase.map(Phase::as_str));
        field(out, "risk_rules", risk_rules.as_deref());
        time(out, "since", *since);
        time(out, "until", *until);
        field(out, "text", text.as_deref());
        field(out, "stele_records", Some(stele_records.as_str()));
    }
}

/// Event time used for since/until and histograms: `event.timestamp.unwrap_or(received_at)`.
pub fn event_time(ev: &StoredEvent) -> i64 {
    ev.event.timestamp.unwrap_or(ev.received_at)
}

/// Result direction along the [`Sort`] key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest (greatest key) first.
    Desc,
    /// Oldest (least key) first.
    Asc,
}

/// What a listing is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// When the event happened ([`event_time`]), ties by seq: the default.
    Time,
    /// When Stele stored it (seq, arrival order).
    Seq,
}

impl Sort {
    /// `time` or `seq`, as the `sort` parameter spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Time => "time",
            Sort::Seq => "seq",
        }
    }
}

/// A place in a listing: the event's time (unix µs, [`event_time`]) and
/// seq. In time order the key is `(time, seq)`; in seq order, `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// [`event_time`] of the event.
    pub time: i64,
    /// Its seq.
    pub seq: u64,
}

impl Position {
    /// The position of a stored event.
    pub fn of(ev: &StoredEvent) -> Position {
        Position {
            time: event_time(ev),
            seq: ev.seq,
        }
    }
}

impl Order {
    /// `desc` or `asc`, as the `order` parameter spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Desc => "desc",
            Order::Asc => "asc",
        }
    }
}

#[cfg(test)]
mod tests;
