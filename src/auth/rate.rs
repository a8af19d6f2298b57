//! Rate limits: how they are written in the configuration (`rate_per_sec =
//! 200`, or `rate = "200/min"`, `"5/s"`, `"1000/h"`), validated, and turned
//! into token buckets (`governor` quotas).
//!
//! Invariants:
//! 1. The old numeric form (`rate_per_sec`, whole requests a second) means
//!    exactly what it meant before: `rate_per_sec = N` is `rate = "N/s"`.
//! 2. Without `burst`, a bucket holds the rate over its period: `"200/min"`
//!    allows 200 requests at once after a quiet minute, then one every 300 ms.

use governor::Quota;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::time::Duration;

/// Highest count of a rate and highest `burst`.
pub const RATE_MAX: u32 = 1_000_000;

/// The period a rate is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Period {
    /// `N/s`.
    #[default]
    Second,
    /// `N/min`.
    Minute,
    /// `N/h`.
    Hour,
}

impl Period {
    /// Its length.
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Period::Second => 1,
            Period::Minute => 60,
            Period::Hour => 3600,
        })
    }

    /// The configuration suffix (`s`, `min`, `h`).
    pub fn suffix(self) -> &'static str {
        match self {
            Period::Second => "s",
            Period::Minute => "min",
            Period::Hour => "h",
        }
    }

    /// In words, for messages: "a second", "a minute", "an hour".
    pub fn words(self) -> &'static str {
        match self {
            Period::Second => "a second",
            Period::Minute => "a minute",
            Period::Hour => "an hour",
        }
    }
}

/// A rate: `count` requests per `period` (`count = 0`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rate {
    /// Requests per period.
    pub count: u32,
    /// The period.
    pub period: Period,
}

impl Rate {
    /// `n` requests a second (the old numeric form).
    pub const fn per_sec(count: u32) -> Rate {
        Rate {
            count,
            period: Period::Second,
        }
    }

    /// Parses `N/s`, `N/min`, `N/h` (also `N/sec`, `N/second`, `N/m`,
    /// `N/minute`, `N/hour`; spaces around the parts are ignored).
    pub fn parse(s: &str) -> Result<Rate, String> {
        let shape = || {
            format!(
                "rate {s:?} must be written N/s, N/min or N/h (N whole requests, e.g. \"200/min\"), \
                 or be a whole number of requests a second"
            )
        };
        let (n, unit) = s.split_once('/').ok_or_else(shape)?;
        let count: u32 = n.trim().parse().map_err(|_| shape())?;
        let period = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Period::Second,
            "m" | "min" | "minute" => Period::Minute,
            "h" | "hr" | "hour" => Period::Hour,
            _ => return Err(shape()),
        };
        let r = Rate { count, period };
        if count > RATE_MAX {
            return Err(format!(
                "rate {s:?}: at most {RATE_MAX} requests {}",
                period.words()
            ));
        }
        Ok(r)
    }

    /// `"200/min"`.
    pub fn to_config(self) -> String {
        format!("{}/{}", self.count, self.period.suffix())
    }

    /// "200 requests a minute", for messages.
    pub fn in_words(self) -> String {
        format!("{} requests {}", self.count, self.period.words())
    }

    /// The token bucket: one request every `period / count`, at most
    /// `burst` saved (0: `count`). `None` for unlimited.
    pub fn quota(self, burst: u32) -> Option<Quota> {
        let count = NonZeroU32::new(self.count)?;
        let burst = NonZeroU32::new(burst).unwrap_or(count);
        let quota = match self.period {
            Period::Second => Quota::per_second(count),
            _ => Quota::with_period(self.period.duration() / count.get())?,
        };
        Some(quota.allow_burst(burst))
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_config())
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(i64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Number(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n <= RATE_MAX)
                .map(Rate::per_sec)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "a rate must be from 0 to {RATE_MAX} requests a second, got {n}"
                    ))
                }),
            Either::Text(t) => Rate::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A token bucket as configured: `rate = "N/min"` (or the old
/// `rate_per_sec = N`) and `burst`. No rate (or a zero one) is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second, the old form (0: unlimited). Ignored when `rate`
    /// is set (both set is a configuration error).
    pub rate_per_sec: u32,
    /// `"N/s"`, `"N/min"`, `"N/h"` (or a number: per second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Requests allowed at once after a quiet spell (0: the rate's count).
    pub burst: u32,
}

impl RateLimit {
    /// `rate_per_sec` a second with `burst`.
    pub const fn new(rate_per_sec: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate_per_sec,
            rate: None,
            burst,
        }
    }

    /// The rate in force.
    pub fn rate(self) -> Rate {
        self.rate.unwrap_or(Rate::per_sec(self.rate_per_sec))
    }

    /// The bucket, `None` for unlimited.
    pub fn quota(self) -> Option<Quota> {
        self.rate().quota(self.burst)
    }

    /// The first problem, naming `key` (e.g. `auth.roles.read`).
    pub fn validate(self, key: &str) -> Result<(), String> {
        if self.rate.is_some() && self.rate_per_sec != 0 {
            return Err(format!(
                "{key}: give either rate (\"N/s\", \"N/min\", \"N/h\") or the older \
                 rate_per_sec, not both"
            ));
        }
        for (name, v) in [("rate_per_sec", self.rate_per_sec), ("burst", self.burst)] {
            if v > RATE_MAX {
                return Err(format!(
                    "{key}.{name} must be at most {RATE_MAX}, got {v} (0 means {})",
                    if name == "burst" {
                        "the rate's count"
                    } else {
                        "unlimited"
                    }
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_every_unit() {
        assert_eq!(
            Rate::parse("200/min"),
            Ok(Rate {
                count: 200,
                period: Period::Minute
            })
        );
        assert_eq!(Rate::parse(" 5 / s "), Ok(Rate::per_sec(5)));
        assert_eq!(Rate::parse("1000/h").unwrap().period, Period::Hour);
        assert_eq!(Rate::parse("3/minute").unwrap().period, Period::Minute);
        assert_eq!(Rate::parse("0/min").unwrap().count, 0);
        for bad in [
            "200",
            "200/day",
            "/min",
            "x/min",
            "-1/s",
            "1.5/s",
            "2000000/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        assert!(Rate::parse("200/fortnight").unwrap_err().contains("N/min"));
        assert_eq!(Rate::parse("200/min").unwrap().to_config(), "200/min");
        assert_eq!(
            Rate::parse("200/h").unwrap().in_words(),
            "200 requests an hour"
        );
    }

    #[test]
    fn numbers_and_strings_deserialize() {
        #[derive(Deserialize)]
        struct T {
            r: RateLimit,
        }
        let t: T = toml::from_str("r = { rate = \"200/min\" }").unwrap();
        assert_eq!(
            t.r.rate(),
            Rate {
                count: 200,
                period: Period::Minute
            }
        );
        let t: T = toml::from_str("r = { rate = 7 }").unwrap();
        assert_eq!(t.r.rate(), Rate::per_sec(7));
        let t: T = toml::from_str("r = { rate_per_sec = 9, burst = 2 }").unwrap();
        assert_eq!((t.r.rate(), t.r.burst), (Rate::per_sec(9), 2));
        assert!(toml::from_str::<T>("r = { rate = \"9/week\" }").is_err());
        let both: T = toml::from_str("r = { rate = \"1/s\", rate_per_sec = 2 }").unwrap();
        assert!(both.r.validate("k").unwrap_err().contains("not both"));
    }

    #[test]
    fn a_per_minute_bucket_holds_the_rate_and_refills_slowly() {
        use governor::clock::{Clock as _, DefaultClock};
        let q = Rate::parse("3/min").unwrap().quota(0).unwrap();
        let l = governor::DefaultDirectRateLimiter::direct(q);
        for _ in 0..3 {
            assert!(l.check().is_ok());
        }
        let wait = l
            .check()
            .unwrap_err()
            .wait_time_from(DefaultClock::default().now());
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(Rate::parse("0/min").unwrap().quota(0).is_none());
    }
}
