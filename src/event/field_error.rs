//! The typed error of one posted field ([`FieldError`], [`FieldErrorKind`]), which
//! validation, the field map and the ingest answers share, and how a rejected value is
//! echoed in one ([`preview`]). Knows no rule: `validate` decides what is an error.

use std::fmt;

use serde::Serialize;

#[allow(unused_imports)] // The doc links name them.
use super::*;

/// The kind of problem with one posted field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldErrorKind {
    /// A required field is absent or null.
    Missing,
    /// The JSON type is wrong (e.g. a number where a string is expected).
    WrongType,
    /// A string is longer than its limit.
    TooLong,
    /// The value has the right type but is not acceptable (bad enum name, bad IP, …).
    InvalidValue,
    /// A number or time is outside its range.
    OutOfRange,
    /// A JSON value, list or the whole event is bigger than its limit.
    TooLarge,
    /// A JSON value nests too deeply.
    TooDeep,
    /// The key is not part of the event model.
    UnknownField,
    /// The posted event is not a JSON object.
    NotAnObject,
    /// The value is reserved for the events Stele writes itself (see [`is_reserved_kind`]).
    Reserved,
    /// Two keys give one field different values (a name mapped by
    /// `ingest.field_map` and the field's own name, see [`super::FieldMap`]).
    Conflict,
}

impl FieldErrorKind {
    /// The snake_case name, as serialized.
    pub const fn as_str(self) -> &'static str {
        match self {
            FieldErrorKind::Missing => "missing",
            FieldErrorKind::WrongType => "wrong_type",
            FieldErrorKind::TooLong => "too_long",
            FieldErrorKind::InvalidValue => "invalid_value",
            FieldErrorKind::OutOfRange => "out_of_range",
            FieldErrorKind::TooLarge => "too_large",
            FieldErrorKind::TooDeep => "too_deep",
            FieldErrorKind::UnknownField => "unknown_field",
            FieldErrorKind::NotAnObject => "not_an_object",
            FieldErrorKind::Reserved => "reserved",
            FieldErrorKind::Conflict => "conflict",
        }
    }
}

impl fmt::Display for FieldErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one posted field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The path of the field: `"severity"`, `"changes[2].field"`, `"metadata"`; `""` for
    /// the event as a whole.
    pub field: String,
    /// The kind of problem.
    pub kind: FieldErrorKind,
    /// A sentence for humans naming the limit or the allowed values.
    pub message: String,
}

impl FieldError {
    /// A new error.
    pub fn new(field: impl Into<String>, kind: FieldErrorKind, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// At most this many bytes of a rejected value (or unknown key) are echoed in errors.
pub(super) const PREVIEW_BYTES: usize = 64;

/// `s` cut to at most [`PREVIEW_BYTES`] bytes on a char boundary, with `…` if cut.
pub(super) fn preview(s: &str) -> String {
    if s.len() <= PREVIEW_BYTES {
        return s.to_owned();
    }
    let mut end = PREVIEW_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
