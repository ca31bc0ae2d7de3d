//! Schedules: when the scheduler creates a DAG's runs.
//!
//! A schedule is a cron expression evaluated in UTC, and nothing else: no time zones (so no
//! daylight-saving gaps or repeated hours), no `@once` or timedelta forms. Fire times are whole
//! seconds. Croner does the cron arithmetic; this module pins down its dialect (5 fields, or 6 with
//! seconds first; no year field) and the two questions the scheduler asks.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// When a DAG's runs are created.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Schedule {
    /// No scheduled runs: runs are only started by hand (or the API).
    #[default]
    Manual,
    /// A cron expression, in UTC.
    Cron {
        /// The expression as written, trimmed, runs of whitespace collapsed to one space, and an
        /// `@` alias in lower case.
        expr: String,
        /// The parsed expression (boxed: it is large, and `Manual` is empty).
        cron: Box<Cron>,
    },
}

/// The `@` aliases and what they stand for (croner expands them the same way).
const ALIASES: [(&str, &str); 6] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

/// The accepted field counts, for messages.
const FIELDS: &str = "5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first";

fn alias_names() -> String {
    super::quoted_list(ALIASES.iter().map(|(alias, _)| *alias))
}

/// Why a schedule is refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// An `@` word that is not one of the aliases.
    #[error("unknown schedule {0:?}, expected a cron expression or one of {names}", names = alias_names())]
    UnknownAlias(String),
    /// Not 5 or 6 fields.
    #[error("invalid cron expression {expr:?}: expected {FIELDS}, found {fields}")]
    FieldCount {
        /// The expression.
        expr: String,
        /// How many fields it has.
        fields: usize,
    },
    /// Croner refused the expression.
    #[error("invalid cron expression {expr:?}: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// Croner's reason.
        reason: CronError,
    },
    /// The expression is valid but matches no time (e.g. February 30th).
    #[error("cron expression {0:?} never fires")]
    NeverFires(String),
}

impl Schedule {
    /// Parses a cron expression (5 fields, or 6 with seconds first) or an `@` alias.
    pub fn cron(expr: &str) -> Result<Schedule, ScheduleError> {
        let mut expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        if expr.starts_with('@') {
            expr.make_ascii_lowercase();
        }
        let cron = parse_cron(&expr)?;
        let schedule = Schedule::Cron { expr, cron: Box::new(cron) };
        match schedule.at_or_after(DateTime::UNIX_EPOCH) {
            Some(_) => Ok(schedule),
            None => Err(ScheduleError::NeverFires(schedule.expr().unwrap_or_default().to_owned())),
        }
    }

    /// The cron expression, or `None` for [`Schedule::Manual`].
    pub fn expr(&self) -> Option<&str> {
        match self {
            Schedule::Manual => None,
            Schedule::Cron { expr, .. } => Some(expr),
        }
    }

    /// The first fire time strictly after `t` (None for Manual).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = self.parsed()?;
        // Fire times are whole seconds: the first after `t` is the first after `t`'s second.
        cron.find_next_occurrence(&whole_second(t), false).ok()
    }

    /// The first fire time at or after `t` (None for Manual).
    pub fn at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let cron = self.parsed()?;
        let second = whole_second(t);
        // `t` inside a second (after its start) cannot be a fire time itself.
        cron.find_next_occurrence(&second, second == t).ok()
    }

    fn parsed(&self) -> Option<&Cron> {
        match self {
            Schedule::Manual => None,
            Schedule::Cron { cron, .. } => Some(cron),
        }
    }
}

fn parse_cron(expr: &str) -> Result<Cron, ScheduleError> {
    let pattern = if expr.starts_with('@') {
        let alias = ALIASES.iter().find(|(alias, _)| alias.eq_ignore_ascii_case(expr));
        alias.map(|(_, pattern)| *pattern).ok_or_else(|| ScheduleError::UnknownAlias(expr.to_owned()))?
    } else {
        expr
    };
    let fields = pattern.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(ScheduleError::FieldCount { expr: expr.to_owned(), fields });
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|reason| ScheduleError::Cron { expr: expr.to_owned(), reason })
}

fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()).expect("test timestamp")
    }

    fn schedule(expr: &str) -> Schedule {
        Schedule::cron(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"))
    }

    #[test]
    fn daily_alias() {
        let daily = schedule("@daily");
        assert_eq!(daily.expr(), Some("@daily"));
        assert_eq!(daily.next_after(utc("2026-11-01T00:00:00Z")), Some(utc("2026-11-02T00:00:00Z")));
        assert_eq!(daily.at_or_after(utc("2026-11-01T00:00:00Z")), Some(utc("2026-11-01T00:00:00Z")));
        assert_eq!(daily.at_or_after(utc("2026-11-01T00:00:00.5Z")), Some(utc("2026-11-02T00:00:00Z")));
        assert_eq!(daily.next_after(utc("2026-10-31T23:59:59.9Z")), Some(utc("2026-11-01T00:00:00Z")));
    }

    #[test]
    fn five_fields() {
        let at_three = schedule("0 3 * * *");
        assert_eq!(at_three.next_after(utc("2026-11-01T03:00:00Z")), Some(utc("2026-11-02T03:00:00Z")));
        assert_eq!(at_three.next_after(utc("2026-11-01T02:59:59Z")), Some(utc("2026-11-01T03:00:00Z")));
        assert_eq!(at_three.at_or_after(utc("2026-11-01T03:00:00Z")), Some(utc("2026-11-01T03:00:00Z")));
        assert_eq!(at_three.at_or_after(utc("2026-11-01T03:00:01Z")), Some(utc("2026-11-02T03:00:00Z")));
    }

    #[test]
    fn six_fields_with_seconds() {
        let every_ten_seconds = schedule("*/10 * * * * *");
        let t = utc("2026-11-01T03:00:00Z");
        assert_eq!(every_ten_seconds.next_after(t), Some(utc("2026-11-01T03:00:10Z")));
        assert_eq!(every_ten_seconds.at_or_after(t), Some(t));
        assert_eq!(every_ten_seconds.at_or_after(utc("2026-11-01T03:00:01Z")), Some(utc("2026-11-01T03:00:10Z")));
    }

    #[test]
    fn manual_never_fires() {
        let t = utc("2026-11-01T03:00:00Z");
        assert_eq!(Schedule::Manual.next_after(t), None);
        assert_eq!(Schedule::Manual.at_or_after(t), None);
        assert_eq!(Schedule::default(), Schedule::Manual);
    }

    #[test]
    fn aliases_and_whitespace() {
        assert_eq!(schedule("@HOURLY").next_after(utc("2026-11-01T03:10:00Z")), Some(utc("2026-11-01T04:00:00Z")));
        assert_eq!(schedule("@weekly").next_after(utc("2026-11-01T00:00:00Z")), Some(utc("2026-11-08T00:00:00Z")));
        assert_eq!(schedule("@monthly").next_after(utc("2026-11-01T00:00:00Z")), Some(utc("2026-12-01T00:00:00Z")));
        assert_eq!(schedule("@yearly").next_after(utc("2026-11-01T00:00:00Z")), Some(utc("2027-01-01T00:00:00Z")));
        assert_eq!(schedule("  0   3 * * * ").expr(), Some("0 3 * * *"));
        assert_eq!(schedule("@Daily").expr(), Some("@daily"));
    }

    #[test]
    fn refused() {
        let message = |expr: &str| Schedule::cron(expr).map(|_| ()).expect_err(expr).to_string();
        assert!(message("@once").starts_with("unknown schedule \"@once\""), "{}", message("@once"));
        assert!(message("0 3 * *").contains("found 4"));
        assert!(message("0 0 3 * * * 2026").contains("found 7"));
        assert!(message("61 * * * *").starts_with("invalid cron expression \"61 * * * *\": "));
        assert_eq!(message("0 0 30 2 *"), "cron expression \"0 0 30 2 *\" never fires");
    }
}
