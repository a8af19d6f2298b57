//! The closed vocabularies of an event (`source`, `status`, `severity`): their wire
//! names, order and on-disk discriminants, all declared once by `wire_enum!`.

use std::fmt;
use std::str::FromStr;

use super::*;

/// The error returned when a string is not the wire name of an enum variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEnumError {
    /// The name of the field the enum belongs to, e.g. `"severity"`.
    pub field: &'static str,
    /// The rejected input (possibly shortened).
    pub value: String,
    /// The accepted wire names.
    pub expected: &'static [&'static str],
}

impl fmt::Display for ParseEnumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} \"{}\"; allowed values are: {}",
            self.field,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for ParseEnumError {}

/// Defines a closed set of lower-case wire names with `as_str`, `parse`, `ALL`, `NAMES`,
/// `Display` and `FromStr`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $field:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            serde::Serialize,
            serde::Deserialize,
            bincode::Encode,
            bincode::Decode,
        )]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration (and on-disk discriminant) order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The wire name of every variant, in the same order as [`Self::ALL`].
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The wire name, as posted and shown in the JSON view.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant with wire name `s` (exact, lower-case), if any.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s).ok_or_else(|| ParseEnumError {
                    field: $field,
                    value: preview(s),
                    expected: Self::NAMES,
                })
            }
        }
    };
}

wire_enum! {
    /// What kind of party performed the action.
    Source, "source" {
        /// A human using an application.
        User => "user",
        /// The system itself (a service acting on its own).
        System => "system",
        /// A third-party integration or API client.
        Integration => "integration",
        /// A scheduled job.
        Scheduled => "scheduled",
    }
}

wire_enum! {
    /// The outcome of the action.
    Status, "status" {
        /// The action completed.
        Success => "success",
        /// The action failed.
        Failure => "failure",
        /// The action was started and has not finished.
        Pending => "pending",
        /// The action was canceled before it completed.
        Canceled => "canceled",
        /// The action completed for some of its targets only.
        Partial => "partial",
    }
}

wire_enum! {
    /// How important the event is; ordered from least (`Debug`) to most (`Critical`)
    /// important, so `severity >= Severity::Warning` works.
    #[derive(PartialOrd, Ord)]
    Severity, "severity" {
        /// Diagnostic detail.
        Debug => "debug",
        /// Routine activity.
        Info => "info",
        /// Normal but significant.
        Notice => "notice",
        /// Something that deserves attention.
        Warning => "warning",
        /// An error.
        Error => "error",
        /// A critical condition.
        Critical => "critical",
    }
}

wire_enum! {
    /// Where an event stands in the life of the process run (`process_id`) or batch
    /// operation (`batch_id`) it belongs to: the lifecycle convention of ARCHITECTURE.md
    /// ("Processes and batch operations").
    Phase, "phase" {
        /// The run or operation began (with `items_total` when known).
        Started => "started",
        /// A progress report (`items_processed`, `items_failed` so far).
        Progress => "progress",
        /// The run or operation ended; its `status` is the outcome.
        Finished => "finished",
    }
}

/// A `risk_score`'s level: the cut used by filters (`risk_score=high`),
/// statistics and the dashboard. Never stored: derived from the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RiskLevel {
    /// 0–30.
    Low,
    /// 31–70.
    Medium,
    /// 71–100.
    High,
}

impl RiskLevel {
    /// Every level, lowest first.
    pub const ALL: [RiskLevel; 3] = [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High];

    /// Its name, as in filters and answers.
    pub const fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }

    /// The level named `s` (ASCII case ignored), if any.
    pub fn parse(s: &str) -> Option<RiskLevel> {
        RiskLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
    }

    /// Its inclusive range of scores.
    pub const fn range(self) -> (u64, u64) {
        match self {
            RiskLevel::Low => (0, 30),
            RiskLevel::Medium => (31, 70),
            RiskLevel::High => (71, 100),
        }
    }

    /// The level of `score`; `None` above 100 (not a valid score).
    pub fn of(score: u64) -> Option<RiskLevel> {
        RiskLevel::ALL.into_iter().find(|l| {
            let (lo, hi) = l.range();
            (lo..=hi).contains(&score)
        })
    }
}
