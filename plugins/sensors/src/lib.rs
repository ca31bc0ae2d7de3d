//! `sensors`: sensor tasks that wait for a time or for another DAG's run. A **sensor** task
//! (`kind = "sensor"` in the DAG file) is poked every `poke_interval` until it answers
//! `sensor: {done: true}`, or until its `timeout` (the total time to wait) runs out. Each poke is one
//! short run of this plugin; it keeps no state between pokes, so every poke decides from scratch.
//!
//! `params.mode` chooses what to wait for.
//!
//! ## `mode = "time"`: wait until a moment
//!
//! | param | meaning |
//! |---|---|
//! | `at` | an RFC 3339 time, e.g. `"2026-11-28T06:00:00Z"` (an offset such as `+02:00` is converted to UTC; a time without offset, or a bare date, is read as UTC, as the DAG file's dates are) |
//! | `after` | a duration in humantime syntax, e.g. `"30s"`, `"5m"`, `"1h 30m"`, counted from the end of the run's data interval, or from its logical date when it has no interval |
//!
//! Exactly one of `at` and `after`. Done when the clock (the host's wall clock, UTC) has reached the
//! target. Output: `{target, now, done}` (times as RFC 3339 UTC); metric `remaining_seconds`.
//!
//! ## `mode = "dag_run"`: wait for a run of another DAG
//!
//! | param | default | meaning |
//! |---|---|---|
//! | `dag_id` | **required** | the DAG to watch; the task must list it in `watch_dags` |
//! | `state` | `"success"` | the run state to wait for |
//! | `same_logical_date` | `false` | count only a run with the same logical date as this run (compared to the second) |
//!
//! The host gives a task with `watch_dags = ["other"]` an extra context field, `dag_runs: {"other":
//! [{run_id, state, run_type, logical_date, interval_start, interval_end}, ...]}`: the latest runs,
//! newest first. Done when one of them is in `state` (and, with `same_logical_date`, has this run's
//! logical date). Output: `{dag_id, state, done, matched, latest, runs_seen}`: `matched` is the newest
//! run that counts (or null), `latest` the newest run whatever its state (or null). When `dag_runs` has
//! no entry for `dag_id` the poke fails with an error saying to add it to `watch_dags`.
//!
//! The `TaskContext` of the SDK has no `dag_runs` field, so [`run_bytes`] reads it from the raw
//! context before handing the rest to the SDK's protocol ([`sandflow_sdk::run_with`]): the exit codes
//! are the SDK's (0 success, 1 the poke failed, 2 not an ABI v1 context, 3 the result not written).

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sandflow_sdk::{json, Context, Failure, Map, SensorResult, TaskResult, Value};
use serde::Deserialize;

/// A moment, as seconds and nanoseconds since 1970-01-01T00:00:00Z (before it: negative seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub secs: i64,
    pub nanos: u32,
}

impl Instant {
    /// The moment a clock reading stands for.
    pub fn from_system(t: SystemTime) -> Instant {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Instant { secs: d.as_secs() as i64, nanos: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                match d.subsec_nanos() {
                    0 => Instant { secs: -(d.as_secs() as i64), nanos: 0 },
                    n => Instant { secs: -(d.as_secs() as i64) - 1, nanos: 1_000_000_000 - n },
                }
            }
        }
    }

    /// This moment plus `d`.
    pub fn plus(self, d: Duration) -> Instant {
        let nanos = self.nanos + d.subsec_nanos();
        Instant {
            secs: self.secs.saturating_add(d.as_secs() as i64).saturating_add(i64::from(nanos / 1_000_000_000)),
            nanos: nanos % 1_000_000_000,
        }
    }

    /// Seconds from `self` to `later` (negative when `later` is earlier).
    pub fn seconds_until(self, later: Instant) -> f64 {
        (later.secs - self.secs) as f64 + (f64::from(later.nanos) - f64::from(self.nanos)) / 1e9
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an RFC 3339 time (`2026-11-28T06:00:00Z`, `2026-11-28T08:00:00.5+02:00`); a time without
/// offset and a bare date (`2026-11-28`, midnight) are read as UTC.
pub fn parse_time(text: &str) -> Result<Instant, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as \"2026-11-28T06:00:00Z\"");
    let b = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let part = b.get(range).ok_or_else(bad)?;
        if part.iter().all(u8::is_ascii_digit) {
            Ok(part.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')))
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(bad());
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(i64::from(year), month) {
        return Err(format!("{text:?}: there is no such date"));
    }
    let days = days_from_civil(i64::from(year), month, day);
    if b.len() == 10 {
        return Ok(Instant { secs: days * 86_400, nanos: 0 });
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return Err(bad());
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // 60 is a leap second, as RFC 3339 allows.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!("{text:?}: there is no such time of day"));
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        for (k, &c) in b[i + 1..i + 1 + digits].iter().enumerate().take(9) {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - k as u32);
        }
        i += 1 + digits;
    }
    let offset: i64 = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let minutes = i64::from(h * 60 + m);
            if sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return Err(bad()),
    };
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset * 60;
    Ok(Instant { secs, nanos })
}

/// RFC 3339 in UTC: `2026-11-28T06:00:00Z`, with milliseconds when there is a fraction.
pub fn format_time(t: Instant) -> String {
    let (y, m, d) = civil_from_days(t.secs.div_euclid(86_400));
    let s = t.secs.rem_euclid(86_400);
    let base = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    match t.nanos / 1_000_000 {
        0 if t.nanos == 0 => format!("{base}Z"),
        ms => format!("{base}.{ms:03}Z"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeParams {
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DagRunParams {
    dag_id: String,
    #[serde(default = "default_state")]
    state: String,
    #[serde(default)]
    same_logical_date: bool,
}

fn default_state() -> String {
    "success".into()
}

/// The params without `mode`, as `T`.
fn params_of<T: serde::de::DeserializeOwned>(params: &Map<String, Value>, mode: &str) -> Result<T, String> {
    let mut rest = params.clone();
    rest.remove("mode");
    serde_json::from_value(Value::Object(rest)).map_err(|e| format!("params (mode {mode}): {e}"))
}

fn answer(done: bool, output: Value) -> TaskResult {
    let mut result = TaskResult::with_output(output);
    result.sensor = Some(SensorResult { done });
    result
}

/// `mode = "time"`.
fn wait_for_time(ctx: &Context, now: Instant) -> Result<TaskResult, String> {
    let p: TimeParams = params_of(&ctx.params, "time")?;
    let target = match (&p.at, &p.after) {
        (Some(at), None) => parse_time(at).map_err(|e| format!("params.at: {e}"))?,
        (None, Some(after)) => {
            let wait = humantime::parse_duration(after)
                .map_err(|e| format!("params.after: invalid duration {after:?}: {e}"))?;
            let (what, base) = match (&ctx.data_interval, &ctx.logical_date) {
                (Some(interval), _) => ("data_interval.end", &interval.end),
                (None, Some(date)) => ("logical_date", date),
                (None, None) => {
                    return Err(
                        "params.after counts from the run's data_interval.end or logical_date, and this run has \
                                neither: give params.at instead"
                            .into(),
                    )
                }
            };
            let base = parse_time(base).map_err(|e| format!("the run's {what}: {e}"))?;
            eprintln!("waiting {after} after the run's {what} {}", format_time(base));
            base.plus(wait)
        }
        (Some(_), Some(_)) => return Err("params: give either `at` or `after`, not both".into()),
        (None, None) => {
            return Err(
                "params: mode `time` needs `at` (an RFC 3339 time) or `after` (a duration such as \"5m\")".into()
            )
        }
    };
    let done = now >= target;
    let remaining = now.seconds_until(target).max(0.0);
    eprintln!(
        "now {}, target {}: {}",
        format_time(now),
        format_time(target),
        if done { "done".to_string() } else { format!("{remaining:.0}s to go") }
    );
    let output = json!({ "target": format_time(target), "now": format_time(now), "done": done });
    Ok(answer(done, output).metric("remaining_seconds", remaining))
}

/// Whether two RFC 3339 times are the same second (the context gives logical dates to the second).
fn same_second(a: &str, b: &str) -> bool {
    match (parse_time(a), parse_time(b)) {
        (Ok(a), Ok(b)) => a.secs == b.secs,
        _ => a == b,
    }
}

/// `mode = "dag_run"`.
fn wait_for_dag_run(ctx: &Context, dag_runs: Option<&Value>) -> Result<TaskResult, String> {
    let p: DagRunParams = params_of(&ctx.params, "dag_run")?;
    let dag = &p.dag_id;
    let runs = dag_runs.and_then(|all| all.get(dag)).ok_or_else(|| {
        let seen: Vec<&str> = match dag_runs.and_then(Value::as_object) {
            Some(all) => all.keys().map(String::as_str).collect(),
            None => Vec::new(),
        };
        let seen = if seen.is_empty() { "none".to_string() } else { seen.join(", ") };
        format!(
            "the context's dag_runs has no entry for DAG `{dag}` (it has: {seen}): the task must list it in \
             watch_dags, e.g. watch_dags = [\"{dag}\"]"
        )
    })?;
    let runs = runs.as_array().ok_or_else(|| format!("dag_runs.{dag}: expected a list of runs, got {runs}"))?;
    let wanted_date = match (p.same_logical_date, &ctx.logical_date) {
        (false, _) => None,
        (true, Some(date)) => Some(date.as_str()),
        (true, None) => return Err("params.same_logical_date is true but this run has no logical_date".into()),
    };
    let field = |run: &Value, name: &str| run.get(name).and_then(Value::as_str).map(str::to_string);
    let matched = runs.iter().find(|run| {
        field(run, "state").as_deref() == Some(p.state.as_str())
            && wanted_date.is_none_or(|want| field(run, "logical_date").is_some_and(|have| same_second(&have, want)))
    });
    let latest = runs.first();
    let done = matched.is_some();
    let describe = |run: &Value| {
        format!(
            "{} ({}, logical date {})",
            field(run, "run_id").unwrap_or_else(|| "?".into()),
            field(run, "state").unwrap_or_else(|| "?".into()),
            field(run, "logical_date").unwrap_or_else(|| "none".into())
        )
    };
    let condition = match wanted_date {
        Some(date) => format!("a run of `{dag}` in state {} with logical date {date}", p.state),
        None => format!("a run of `{dag}` in state {}", p.state),
    };
    match (matched, latest) {
        (Some(run), _) => eprintln!("found {condition}: {}", describe(run)),
        (None, Some(run)) => {
            eprintln!("waiting for {condition}; {} runs seen, the latest {}", runs.len(), describe(run))
        }
        (None, None) => eprintln!("waiting for {condition}; no run of `{dag}` yet"),
    }
    let output = json!({
        "dag_id": dag,
        "state": p.state,
        "done": done,
        "matched": matched,
        "latest": latest,
        "runs_seen": runs.len(),
    });
    Ok(answer(done, output).metric("runs_seen", runs.len() as f64))
}

/// The sensor: one poke. `dag_runs` is the context's extra field of that name, `now` the clock.
pub fn handle(ctx: Context, dag_runs: Option<&Value>, now: SystemTime) -> Result<TaskResult, String> {
    match ctx.params.get("mode") {
        Some(Value::String(mode)) if mode == "time" => wait_for_time(&ctx, Instant::from_system(now)),
        Some(Value::String(mode)) if mode == "dag_run" => wait_for_dag_run(&ctx, dag_runs),
        Some(other) => Err(format!("params.mode: expected \"time\" or \"dag_run\", got {other}")),
        None => Err("params.mode is required: \"time\" or \"dag_run\"".into()),
    }
}

/// The whole protocol over a context's bytes: reads `dag_runs` from the raw JSON, then lets the SDK
/// parse and check the context, call [`handle`] and write the result to `out`.
pub fn run_bytes(text: &[u8], out: impl Write, now: SystemTime) -> Result<(), Failure> {
    // A context that is not JSON is reported by run_with, with the SDK's message and exit code.
    let dag_runs = serde_json::from_slice::<Value>(text).ok().and_then(|mut v| v.get_mut("dag_runs").map(Value::take));
    sandflow_sdk::run_with(text, out, |ctx| handle(ctx, dag_runs.as_ref(), now))
}

/// What `main` does: stdin to stdout, the failure on stderr; returns the exit code.
pub fn run_stdin(now: SystemTime) -> i32 {
    let mut text = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut text) {
        let failure = Failure::BadContext(e.to_string());
        eprintln!("{failure}");
        return failure.exit_code();
    }
    match run_bytes(&text, std::io::stdout().lock(), now) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("{failure}");
            failure.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        let t = parse_time(text).unwrap();
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
    }

    fn ctx(value: Value) -> Context {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn parses_and_formats_rfc3339() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), Instant { secs: 0, nanos: 0 });
        assert_eq!(parse_time("2026-11-28T06:00:00Z").unwrap().secs, 1_795_845_600);
        assert_eq!(parse_time("2026-11-28T08:00:00+02:00").unwrap(), parse_time("2026-11-28T06:00:00Z").unwrap());
        assert_eq!(parse_time("2026-11-27T23:30:00-06:30").unwrap(), parse_time("2026-11-28T06:00:00z").unwrap());
        assert_eq!(parse_time("2026-11-28").unwrap(), parse_time("2026-11-28T00:00:00Z").unwrap());
        assert_eq!(parse_time("2026-11-28 06:00:00").unwrap(), parse_time("2026-11-28T06:00:00Z").unwrap());
        assert_eq!(parse_time("2026-11-28T06:00:00.123456Z").unwrap().nanos, 123_456_000);
        assert_eq!(parse_time("2024-02-29T12:00:00Z").unwrap().secs, 1_709_208_000);
        assert_eq!(parse_time("1969-12-31T23:59:59Z").unwrap(), Instant { secs: -1, nanos: 0 });
        for bad in
            ["", "2026-11-28T06:00", "2026/11/28", "2026-11-28T06:00:00+0200", "2026-11-28T06:00:00Zx", "tomorrow"]
        {
            assert!(parse_time(bad).unwrap_err().contains("is not an RFC 3339 time"), "{bad}");
        }
        assert_eq!(parse_time("2026-02-29T00:00:00Z").unwrap_err(), "\"2026-02-29T00:00:00Z\": there is no such date");
        assert!(parse_time("2026-11-28T24:00:00Z").unwrap_err().contains("no such time of day"));
        for text in [
            "2026-11-28T06:00:00Z",
            "2024-02-29T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "1969-07-20T20:17:40Z",
            "2026-11-28T06:00:00.250Z",
        ] {
            assert_eq!(format_time(parse_time(text).unwrap()), text);
        }
        // Agrees with humantime, the host's formatter, over a range of days.
        for days in (0..30_000).step_by(37) {
            let t = UNIX_EPOCH + Duration::from_secs(days * 86_400 + 12_345);
            assert_eq!(format_time(Instant::from_system(t)), humantime::format_rfc3339_seconds(t).to_string());
        }
    }

    #[test]
    fn time_at() {
        let c = ctx(json!({ "abi": 1, "params": { "mode": "time", "at": "2026-11-28T06:00:00Z" } }));
        let before = handle(c.clone(), None, at("2026-11-28T05:59:30Z")).unwrap();
        assert_eq!(before.sensor, Some(SensorResult { done: false }));
        assert_eq!(
            before.output,
            json!({ "target": "2026-11-28T06:00:00Z", "now": "2026-11-28T05:59:30Z", "done": false })
        );
        assert_eq!(before.metrics["remaining_seconds"], 30.0);
        let on_time = handle(c.clone(), None, at("2026-11-28T06:00:00Z")).unwrap();
        assert_eq!(on_time.sensor, Some(SensorResult { done: true }));
        let after = handle(c, None, at("2026-11-29T00:00:00Z")).unwrap();
        assert_eq!(after.output["done"], true);
        assert_eq!(after.metrics["remaining_seconds"], 0.0);
    }

    #[test]
    fn time_after_counts_from_the_interval_end_else_the_logical_date() {
        let scheduled = ctx(json!({
            "abi": 1,
            "logical_date": "2026-11-27T00:00:00Z",
            "data_interval": { "start": "2026-11-27T00:00:00Z", "end": "2026-11-28T00:00:00Z" },
            "params": { "mode": "time", "after": "1h 30m" },
        }));
        let r = handle(scheduled.clone(), None, at("2026-11-28T01:00:00Z")).unwrap();
        assert_eq!(r.output["target"], "2026-11-28T01:30:00Z");
        assert_eq!(r.output["done"], false);
        assert_eq!(handle(scheduled, None, at("2026-11-28T01:30:01Z")).unwrap().output["done"], true);
        let manual = ctx(
            json!({ "abi": 1, "logical_date": "2026-11-28T10:00:00Z", "params": { "mode": "time", "after": "30s" } }),
        );
        let r = handle(manual, None, at("2026-11-28T10:00:31Z")).unwrap();
        assert_eq!(r.output["target"], "2026-11-28T10:00:30Z");
        assert_eq!(r.sensor, Some(SensorResult { done: true }));
    }

    #[test]
    fn time_errors() {
        let now = at("2026-11-28T00:00:00Z");
        let err = |params: Value| handle(ctx(json!({ "abi": 1, "params": params })), None, now).unwrap_err();
        assert_eq!(
            err(json!({ "mode": "time" })),
            "params: mode `time` needs `at` (an RFC 3339 time) or `after` (a duration such as \"5m\")"
        );
        assert_eq!(
            err(json!({ "mode": "time", "at": "2026-11-28", "after": "5m" })),
            "params: give either `at` or `after`, not both"
        );
        assert!(err(json!({ "mode": "time", "after": "5m" })).contains("this run has neither"));
        assert!(err(json!({ "mode": "time", "at": "noon" })).starts_with("params.at: \"noon\" is not an RFC 3339 time"));
        let bad_after = handle(
            ctx(json!({ "abi": 1, "logical_date": "2026-11-28T00:00:00Z", "params": { "mode": "time", "after": "5 parsecs" } })),
            None,
            now,
        )
        .unwrap_err();
        assert!(bad_after.starts_with("params.after: invalid duration \"5 parsecs\""), "{bad_after}");
        assert!(err(json!({ "mode": "time", "at": "2026-11-28", "dag_id": "x" }))
            .starts_with("params (mode time): unknown field `dag_id`"));
        assert_eq!(err(json!({})), "params.mode is required: \"time\" or \"dag_run\"");
        assert_eq!(err(json!({ "mode": "file" })), "params.mode: expected \"time\" or \"dag_run\", got \"file\"");
    }

    fn run(run_id: &str, state: &str, logical_date: &str) -> Value {
        json!({
            "run_id": run_id, "state": state, "run_type": "manual", "logical_date": logical_date,
            "interval_start": null, "interval_end": null,
        })
    }

    #[test]
    fn dag_run_waits_for_a_run_in_the_state() {
        let c = ctx(json!({ "abi": 1, "params": { "mode": "dag_run", "dag_id": "ml_training" } }));
        let now = SystemTime::now();
        // No run yet.
        let r = handle(c.clone(), Some(&json!({ "ml_training": [] })), now).unwrap();
        assert_eq!(r.sensor, Some(SensorResult { done: false }));
        assert_eq!(r.output["latest"], Value::Null);
        // Running, and an older failure: not yet.
        let runs = json!({ "ml_training": [run("m2", "running", "2026-11-28T10:00:00Z"), run("m1", "failed", "2026-11-28T09:00:00Z")] });
        let r = handle(c.clone(), Some(&runs), now).unwrap();
        assert_eq!(r.output["done"], false);
        assert_eq!(r.output["latest"]["run_id"], "m2");
        assert_eq!(r.output["runs_seen"], 2);
        // Any success counts, even an older one; the newest success is the match.
        let runs = json!({ "ml_training": [
            run("m3", "running", "2026-11-28T11:00:00Z"), run("m2", "success", "2026-11-28T10:00:00Z"),
            run("m1", "success", "2026-11-28T09:00:00Z"),
        ] });
        let r = handle(c, Some(&runs), now).unwrap();
        assert_eq!(r.sensor, Some(SensorResult { done: true }));
        assert_eq!(r.output["matched"]["run_id"], "m2");
        // Another state.
        let c = ctx(json!({ "abi": 1, "params": { "mode": "dag_run", "dag_id": "ml_training", "state": "failed" } }));
        let runs = json!({ "ml_training": [run("m1", "success", "2026-11-28T09:00:00Z")] });
        assert_eq!(handle(c, Some(&runs), now).unwrap().output["done"], false);
    }

    #[test]
    fn dag_run_same_logical_date() {
        let c = ctx(json!({
            "abi": 1, "logical_date": "2026-11-28T00:00:00Z",
            "params": { "mode": "dag_run", "dag_id": "etl", "same_logical_date": true },
        }));
        let now = SystemTime::now();
        let other_day = json!({ "etl": [run("s2", "success", "2026-11-29T00:00:00Z"), run("s1", "success", "2026-11-27T00:00:00Z")] });
        assert_eq!(handle(c.clone(), Some(&other_day), now).unwrap().output["done"], false);
        // The same moment written with an offset (and a fraction) counts.
        let same = json!({ "etl": [run("s2", "success", "2026-11-29T00:00:00Z"), run("s1", "success", "2026-11-28T01:00:00.25+01:00")] });
        let r = handle(c.clone(), Some(&same), now).unwrap();
        assert_eq!(r.output["matched"]["run_id"], "s1");
        let no_date =
            ctx(json!({ "abi": 1, "params": { "mode": "dag_run", "dag_id": "etl", "same_logical_date": true } }));
        assert_eq!(
            handle(no_date, Some(&same), now).unwrap_err(),
            "params.same_logical_date is true but this run has no logical_date"
        );
    }

    #[test]
    fn dag_run_errors() {
        let c = ctx(json!({ "abi": 1, "params": { "mode": "dag_run", "dag_id": "ml_training" } }));
        let now = SystemTime::now();
        assert_eq!(
            handle(c.clone(), None, now).unwrap_err(),
            "the context's dag_runs has no entry for DAG `ml_training` (it has: none): the task must list it in \
             watch_dags, e.g. watch_dags = [\"ml_training\"]"
        );
        let err = handle(c.clone(), Some(&json!({ "etl": [] })), now).unwrap_err();
        assert!(err.contains("(it has: etl): the task must list it in watch_dags"), "{err}");
        assert_eq!(
            handle(c, Some(&json!({ "ml_training": 3 })), now).unwrap_err(),
            "dag_runs.ml_training: expected a list of runs, got 3"
        );
        let missing = ctx(json!({ "abi": 1, "params": { "mode": "dag_run" } }));
        assert!(handle(missing, None, now).unwrap_err().starts_with("params (mode dag_run): missing field `dag_id`"));
        let typo = ctx(json!({ "abi": 1, "params": { "mode": "dag_run", "dag_id": "x", "sate": "success" } }));
        assert!(handle(typo, None, now).unwrap_err().starts_with("params (mode dag_run): unknown field `sate`"));
    }

    #[test]
    fn the_protocol_reads_dag_runs_from_the_raw_context() {
        let text = json!({
            "abi": 1, "task_id": "wait",
            "params": { "mode": "dag_run", "dag_id": "ml_training" },
            "dag_runs": { "ml_training": [run("m1", "success", "2026-11-28T09:00:00Z")] },
        })
        .to_string();
        let mut out = Vec::new();
        run_bytes(text.as_bytes(), &mut out, SystemTime::now()).unwrap();
        let result = TaskResult::parse(&out).unwrap();
        assert_eq!(result.sensor, Some(SensorResult { done: true }));
        assert_eq!(result.output["matched"]["run_id"], "m1");
        // Exit codes as the SDK's: 1 for a failed poke, 2 for a context that is not ABI v1.
        let no_watch = json!({ "abi": 1, "params": { "mode": "dag_run", "dag_id": "ml_training" } }).to_string();
        assert_eq!(run_bytes(no_watch.as_bytes(), Vec::new(), SystemTime::now()).unwrap_err().exit_code(), 1);
        assert_eq!(run_bytes(b"not json", Vec::new(), SystemTime::now()).unwrap_err().exit_code(), 2);
        assert_eq!(run_bytes(br#"{"abi":2}"#, Vec::new(), SystemTime::now()).unwrap_err().exit_code(), 2);
    }
}
