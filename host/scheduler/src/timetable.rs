//! Data intervals: which scheduled runs are due.
//!
//! A schedule's fire times t0 < t1 < t2 ... cut time into intervals `[t_i, t_i+1)`. The run for an
//! interval covers its data and is created when the interval has ended, at `t_i+1`: a `@daily`
//! DAG's run for 1 November is created at 2 November 00:00. The first interval starts at the first
//! fire time at or after `start_date` (or, without a start_date, at or after the moment the DAG was
//! first loaded). No interval that starts after `end_date` is created. With `catchup = false` only
//! the latest ended interval is created when several are due; with `catchup = true` every one is,
//! oldest first, as `max_active_runs` allows.

use chrono::{DateTime, Utc};
use sandflow_core::dag::Dag;

/// A data interval `[start, end)`.
pub type Interval = (DateTime<Utc>, DateTime<Utc>);

/// How many intervals one call looks at, at most: a catch-up of years of minutely intervals is
/// created a bounded batch at a time.
const MAX_INTERVALS_PER_CALL: usize = 10_000;

/// The intervals due at `now`, oldest first, at most `room` of them. `last_end` is the end of the
/// DAG's latest scheduled interval; `first_seen` stands in for a missing start_date.
pub fn due_intervals(
    dag: &Dag,
    last_end: Option<DateTime<Utc>>,
    first_seen: DateTime<Utc>,
    now: DateTime<Utc>,
    room: usize,
) -> Vec<Interval> {
    if room == 0 {
        return Vec::new();
    }
    let mut start = match last_end {
        Some(end) => end,
        None => match dag.schedule.at_or_after(dag.start_date.unwrap_or(first_seen)) {
            Some(first) => first,
            None => return Vec::new(),
        },
    };
    if !dag.catchup {
        start = skip_to_latest(dag, start, now);
    }
    let mut due = Vec::new();
    while due.len() < MAX_INTERVALS_PER_CALL {
        if dag.end_date.is_some_and(|end_date| start > end_date) {
            break;
        }
        let Some(end) = dag.schedule.next_after(start) else { break };
        if end > now {
            break;
        }
        due.push((start, end));
        start = end;
    }
    if !dag.catchup {
        due.drain(..due.len().saturating_sub(1));
    }
    due.truncate(room);
    due
}

/// Without catchup, only the latest ended interval matters: find a start near `now` by probing
/// windows that double in size, so a DAG paused for a year does not walk a year of fire times.
fn skip_to_latest(dag: &Dag, start: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let mut window = chrono::Duration::seconds(1);
    while let Some(probe) = now.checked_sub_signed(window) {
        if probe <= start {
            break;
        }
        let Some(candidate) = dag.schedule.at_or_after(probe) else { break };
        if dag.schedule.next_after(candidate).is_some_and(|end| end <= now) {
            return candidate;
        }
        window = window * 2;
    }
    start
}

/// When the next interval ends (the next moment a run may become due), if ever.
pub fn next_due(
    dag: &Dag,
    last_end: Option<DateTime<Utc>>,
    first_seen: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let start = match last_end {
        Some(end) => end,
        None => dag.schedule.at_or_after(dag.start_date.unwrap_or(first_seen))?,
    };
    if dag.end_date.is_some_and(|end_date| start > end_date) {
        return None;
    }
    dag.schedule.next_after(start).map(|end| end.max(now))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use sandflow_core::dag::{parse_dag, Caps, PluginRef};

    use super::*;

    fn dag(extra: &str) -> Dag {
        let text = format!("id = \"d\"\n{extra}\n[tasks.a]\nplugin = \"a.wasm\"\n");
        let mut resolve = |_: &PluginRef| Ok(format!("sha256:{}", "0".repeat(64)));
        parse_dag("d.toml", &text, &Caps::default(), &mut resolve).unwrap()
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    #[test]
    fn a_daily_run_is_created_when_its_day_has_ended() {
        let d = dag("schedule = \"@daily\"\nstart_date = \"2026-11-01\"");
        assert!(due_intervals(&d, None, at(1, 0), at(1, 23), 16).is_empty(), "1 Nov has not ended yet");
        assert_eq!(due_intervals(&d, None, at(1, 0), at(2, 0), 16), vec![(at(1, 0), at(2, 0))]);
        assert_eq!(next_due(&d, None, at(1, 0), at(1, 12)), Some(at(2, 0)));
    }

    #[test]
    fn without_catchup_only_the_latest_interval_runs() {
        let d = dag("schedule = \"@daily\"\nstart_date = \"2026-11-01\"");
        assert_eq!(due_intervals(&d, None, at(1, 0), at(5, 6), 16), vec![(at(4, 0), at(5, 0))]);
    }

    #[test]
    fn with_catchup_every_missed_interval_runs_as_room_allows() {
        let d = dag("schedule = \"@daily\"\nstart_date = \"2026-11-01\"\ncatchup = true");
        let due = due_intervals(&d, None, at(1, 0), at(5, 6), 16);
        assert_eq!(due, vec![(at(1, 0), at(2, 0)), (at(2, 0), at(3, 0)), (at(3, 0), at(4, 0)), (at(4, 0), at(5, 0))]);
        assert_eq!(due_intervals(&d, None, at(1, 0), at(5, 6), 2).len(), 2);
        assert_eq!(
            due_intervals(&d, Some(at(3, 0)), at(1, 0), at(5, 6), 16),
            vec![(at(3, 0), at(4, 0)), (at(4, 0), at(5, 0))]
        );
    }

    #[test]
    fn without_catchup_a_long_gap_jumps_to_the_latest_interval() {
        let d = dag("schedule = \"* * * * * *\"\nstart_date = \"2020-01-01\"");
        let now = at(9, 12) + chrono::Duration::milliseconds(500);
        assert_eq!(
            due_intervals(&d, None, at(1, 0), now, 16),
            vec![(at(9, 12) - chrono::Duration::seconds(1), at(9, 12))]
        );
    }

    #[test]
    fn end_date_stops_the_schedule() {
        let d = dag("schedule = \"@daily\"\nstart_date = \"2026-11-01\"\nend_date = \"2026-11-02\"\ncatchup = true");
        assert_eq!(due_intervals(&d, None, at(1, 0), at(9, 0), 16).len(), 2, "intervals starting 1 and 2 Nov");
        assert_eq!(next_due(&d, Some(at(3, 0)), at(1, 0), at(9, 0)), None);
    }

    #[test]
    fn a_start_date_between_fire_times_starts_at_the_next_one() {
        let d = dag("schedule = \"0 3 * * *\"\nstart_date = \"2026-11-01T12:00:00Z\"");
        assert_eq!(due_intervals(&d, None, at(1, 0), at(3, 3), 16), vec![(at(2, 3), at(3, 3))]);
    }

    #[test]
    fn manual_dags_are_never_due() {
        let d = dag("");
        assert!(due_intervals(&d, None, at(1, 0), at(9, 0), 16).is_empty());
        assert_eq!(next_due(&d, None, at(1, 0), at(9, 0)), None);
    }
}
