//! Typed reads from `toml`'s spanned tree, collecting diagnostics instead of stopping.
//!
//! Each read takes a spanned value and the field's dotted path, and returns the typed value, or
//! `None` after recording a [`Diagnostic`] at the value's position. Callers fall back to a default
//! and carry on, so a file with five mistakes gets five messages in one go.

use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use toml::de::{DeTable, DeValue};
use toml::value::{Datetime, Offset};
use toml::Spanned;

use super::diagnostic::{Diagnostic, LineIndex};
use super::quoted_list;

/// A value of the spanned tree.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// Reads values of one file and collects the diagnostics.
pub(super) struct Reader<'t> {
    file: &'t str,
    lines: LineIndex<'t>,
    diagnostics: Vec<Diagnostic>,
}

impl<'t> Reader<'t> {
    pub(super) fn new(file: &'t str, text: &'t str) -> Self {
        Reader { file, lines: LineIndex::new(text), diagnostics: Vec::new() }
    }

    /// Records a problem at the start of `span`.
    pub(super) fn error(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        let (line, column) = self.lines.position(span.start);
        self.diagnostics.push(Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    pub(super) fn has_errors(&self) -> bool {
        !self.diagnostics.is_empty()
    }

    /// The diagnostics, in the order of their position in the file.
    pub(super) fn finish(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        self.diagnostics
    }

    /// The file offset of byte `at` of the string value spanning `span`.
    ///
    /// Exact for one-line strings without escapes, where the value is the source between the
    /// quotes; otherwise the start of the string, which is still the right line.
    pub(super) fn offset_in_string(&self, span: Range<usize>, value: &str, at: usize) -> usize {
        let source = self.lines.slice(span.clone());
        let quote_free = source.len() == value.len() + 2 && source.get(1..source.len() - 1) == Some(value);
        if quote_free {
            span.start + 1 + at
        } else {
            span.start
        }
    }

    /// Refuses the keys of `table` that are not in `accepted`.
    pub(super) fn known_fields(&mut self, table: &DeTable<'_>, path: &str, accepted: &[&str]) {
        for key in table.keys() {
            let name: &str = key.get_ref();
            if !accepted.contains(&name) {
                let message =
                    format!("unknown field {name:?}, expected one of {}", quoted_list(accepted.iter().copied()));
                self.error(key.span(), &join(path, name), message);
            }
        }
    }

    fn wrong_type(&mut self, value: &Value<'_>, field: &str, expected: &str) {
        let found = with_article(value.get_ref().type_str());
        self.error(value.span(), field, format!("expected {expected}, found {found}"));
    }

    pub(super) fn string(&mut self, value: &Value<'_>, field: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(text) => Some(text.to_string()),
            _ => {
                self.wrong_type(value, field, "a string");
                None
            }
        }
    }

    pub(super) fn bool(&mut self, value: &Value<'_>, field: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(flag) => Some(*flag),
            _ => {
                self.wrong_type(value, field, "a boolean");
                None
            }
        }
    }

    pub(super) fn table<'v, 'i>(&mut self, value: &'v Value<'i>, field: &str) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.wrong_type(value, field, "a table");
                None
            }
        }
    }

    /// An array of strings, each with its span.
    pub(super) fn strings(&mut self, value: &Value<'_>, field: &str) -> Option<Vec<Spanned<String>>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(value, field, "an array of strings");
            return None;
        };
        let mut strings = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if let Some(text) = self.string(item, &format!("{field}[{index}]")) {
                strings.push(Spanned::new(item.span(), text));
            }
        }
        (strings.len() == items.len()).then_some(strings)
    }

    pub(super) fn u32(&mut self, value: &Value<'_>, field: &str) -> Option<u32> {
        let number = self.unsigned(value, field, u32::MAX.into())?;
        u32::try_from(number).ok()
    }

    pub(super) fn u64(&mut self, value: &Value<'_>, field: &str) -> Option<u64> {
        self.unsigned(value, field, u64::MAX)
    }

    fn unsigned(&mut self, value: &Value<'_>, field: &str, max: u64) -> Option<u64> {
        let DeValue::Integer(integer) = value.get_ref() else {
            self.wrong_type(value, field, "an integer");
            return None;
        };
        // TOML integers are 64-bit signed, so an i128 holds any of them.
        let parsed = i128::from_str_radix(integer.as_str(), integer.radix()).ok();
        if parsed.is_some_and(|number| number < 0) {
            let message = format!("must not be negative, found {integer}");
            self.error(value.span(), field, message);
            return None;
        }
        match parsed.and_then(|number| u64::try_from(number).ok()) {
            Some(number) if number <= max => Some(number),
            _ => {
                let message = format!("must be at most {max}, found {integer}");
                self.error(value.span(), field, message);
                None
            }
        }
    }

    /// A duration written as a string in `humantime`'s syntax: `"30s"`, `"5m"`, `"1h 30m"`.
    pub(super) fn duration(&mut self, value: &Value<'_>, field: &str) -> Option<Duration> {
        let DeValue::String(text) = value.get_ref() else {
            self.wrong_type(value, field, "a duration string like \"30s\" or \"1h 30m\"");
            return None;
        };
        match humantime::parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(reason) => {
                self.error(value.span(), field, format!("invalid duration {text:?}: {reason}"));
                None
            }
        }
    }

    /// A UTC instant: a TOML date or date-time, or a string `"YYYY-MM-DD"` or RFC 3339.
    pub(super) fn date(&mut self, value: &Value<'_>, field: &str) -> Option<DateTime<Utc>> {
        let parsed = match value.get_ref() {
            DeValue::String(text) => parse_date(text),
            DeValue::Datetime(datetime) => toml_date(datetime),
            _ => {
                self.wrong_type(value, field, "a date like \"2026-11-01\"");
                return None;
            }
        };
        parsed.map_err(|message| self.error(value.span(), field, message)).ok()
    }

    /// Any TOML value as JSON; datetimes become their TOML text.
    pub(super) fn json(&mut self, value: &Value<'_>, field: &str) -> Option<serde_json::Value> {
        use serde_json::Value as Json;
        match value.get_ref() {
            DeValue::String(text) => Some(Json::String(text.to_string())),
            DeValue::Boolean(flag) => Some(Json::Bool(*flag)),
            DeValue::Datetime(datetime) => Some(Json::String(datetime.to_string())),
            DeValue::Integer(integer) => {
                let number = i64::from_str_radix(integer.as_str(), integer.radix()).ok();
                number.map(Json::from).or_else(|| {
                    self.error(value.span(), field, format!("integer {integer} is out of range"));
                    None
                })
            }
            DeValue::Float(float) => {
                let number = float.as_str().parse::<f64>().ok().and_then(serde_json::Number::from_f64);
                number.map(Json::Number).or_else(|| {
                    self.error(value.span(), field, format!("{float} cannot be represented in JSON"));
                    None
                })
            }
            DeValue::Array(items) => {
                let items: Vec<_> = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| self.json(item, &format!("{field}[{index}]")))
                    .collect();
                items.into_iter().collect::<Option<Vec<_>>>().map(Json::Array)
            }
            DeValue::Table(table) => self.json_object(table, field).map(Json::Object),
        }
    }

    /// A TOML table as a JSON object.
    pub(super) fn json_object(
        &mut self,
        table: &DeTable<'_>,
        field: &str,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let entries: Vec<_> = table
            .iter()
            .map(|(key, value)| {
                let json = self.json(value, &join(field, key.get_ref()));
                json.map(|json| (key.get_ref().to_string(), json))
            })
            .collect();
        entries.into_iter().collect()
    }
}

/// The dotted path `path.name` (`name` at the top level), with `name` quoted as in TOML when it
/// is not a bare key, e.g. `tasks."load.v2"`.
pub(super) fn join(path: &str, name: &str) -> String {
    let bare = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let name = if bare { name.to_owned() } else { format!("{name:?}") };
    if path.is_empty() {
        name
    } else {
        format!("{path}.{name}")
    }
}

fn with_article(type_name: &str) -> String {
    match type_name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

/// `"2026-11-01"` (midnight UTC), an RFC 3339 timestamp, or a date-time without offset (read as
/// UTC).
fn parse_date(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(NaiveTime::MIN).and_utc());
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.to_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(local) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(local.and_utc());
        }
    }
    let expected = "\"YYYY-MM-DD\" or an RFC 3339 timestamp like \"2026-11-01T03:00:00Z\"";
    Err(format!("invalid date {text:?}: expected {expected}"))
}

/// A TOML date or date-time as UTC; a local one is read as UTC.
fn toml_date(datetime: &Datetime) -> Result<DateTime<Utc>, String> {
    let invalid = || format!("invalid date {datetime}");
    let Some(date) = datetime.date else {
        return Err(format!("expected a date, found the time of day {datetime}"));
    };
    let day = NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into()).ok_or_else(invalid)?;
    let time = match datetime.time {
        None => NaiveTime::MIN,
        Some(time) => NaiveTime::from_hms_nano_opt(
            time.hour.into(),
            time.minute.into(),
            time.second.unwrap_or(0).into(),
            time.nanosecond.unwrap_or(0),
        )
        .ok_or_else(invalid)?,
    };
    let offset_minutes = match datetime.offset {
        Some(Offset::Custom { minutes }) => i64::from(minutes),
        Some(Offset::Z) | None => 0,
    };
    let utc = day.and_time(time).and_utc() - chrono::Duration::minutes(offset_minutes);
    Ok(utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()).expect("test timestamp")
    }

    #[test]
    fn date_strings() {
        assert_eq!(parse_date("2026-11-01"), Ok(utc("2026-11-01T00:00:00Z")));
        assert_eq!(parse_date("2026-11-01T03:00:00+02:00"), Ok(utc("2026-11-01T01:00:00Z")));
        assert_eq!(parse_date("2026-11-01T03:00:00"), Ok(utc("2026-11-01T03:00:00Z")));
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("tomorrow").is_err());
    }

    #[test]
    fn articles() {
        assert_eq!(with_article("integer"), "an integer");
        assert_eq!(with_article("string"), "a string");
        assert_eq!(with_article("array"), "an array");
    }
}
