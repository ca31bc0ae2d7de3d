//! Two schedulers started at the same instant on a fresh database: one migration (no error in
//! either process, every migration recorded once) and one run per interval of a catching-up
//! hourly DAG.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sandflow_core::state::RunState;
use sqlx::{Connection, PgConnection};

use crate::harness::Cluster;

/// How many intervals the DAG has: from six hours before the current hour to the one that ended
/// at it.
const INTERVALS: i64 = 6;

/// The PostgreSQL migrations this build embeds, counted from the source tree.
fn postgres_migrations() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../store/migrations/postgres");
    let files = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {dir}: {e}"));
    files.filter(|f| f.as_ref().is_ok_and(|f| f.path().extension().is_some_and(|x| x == "sql"))).count() as i64
}

/// `(all rows, successful rows)` of `_sqlx_migrations`, or `None` while the table is not there.
fn migration_rows(cluster: &Cluster) -> Option<(i64, i64)> {
    cluster.block_on(async {
        let mut conn = PgConnection::connect(&cluster.url).await.ok()?;
        let rows: Result<(i64, i64), _> =
            sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE success) FROM _sqlx_migrations")
                .fetch_one(&mut conn)
                .await;
        let _ = conn.close().await;
        rows.ok()
    })
}

/// The lines of a process's log that report an error (tracing's ERROR level, or the CLI's
/// `error:` line before it exits).
fn error_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" ERROR ") || l.starts_with("error:")).collect()
}

#[test]
fn two_schedulers_starting_at_once_on_a_fresh_database() {
    // The first interval starts six hours before the current hour; end_date stops them at the
    // sixth, which ended at the current hour: however long the test takes, six intervals.
    let hour = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap();
    let first = hour - TimeDelta::hours(INTERVALS);
    let last_start = first + TimeDelta::hours(INTERVALS - 1);
    let dag = format!(
        r#"
id = "hourly"
schedule = "@hourly"
start_date = "{}"
end_date = "{}"
catchup = true
[tasks.tick]
plugin = "plugins/noop.wasm"
"#,
        first.to_rfc3339(),
        (last_start + TimeDelta::minutes(30)).to_rfc3339(),
    );
    let mut cluster = Cluster::new(&[("hourly", &dag)]);
    // Nothing has opened the database yet; both start now, one right after the other.
    let a = cluster.scheduler();
    let b = cluster.scheduler();
    cluster.worker(2, None, &[]);

    let expected = postgres_migrations();
    // Watch the migration with a connection of our own: the test's store would migrate too.
    let rows = cluster.until("the database migrated", |c| migration_rows(c).filter(|&(_, ok)| ok == expected));
    assert_eq!(rows, (expected, expected), "every migration recorded once, all successful");

    let starts: Vec<DateTime<Utc>> = (0..INTERVALS).map(|i| first + TimeDelta::hours(i)).collect();
    cluster.until("a successful run for each of the six intervals", |c| {
        let runs = c.runs("hourly");
        let done = runs.iter().filter(|r| r.state == RunState::Success).count();
        (done >= starts.len()).then_some(())
    });
    // Time for a second scheduler's duplicate to show, if there were one.
    std::thread::sleep(Duration::from_secs(2));

    let runs = cluster.runs("hourly");
    let mut per_interval: BTreeMap<Option<DateTime<Utc>>, Vec<&str>> = BTreeMap::new();
    for run in &runs {
        per_interval.entry(run.interval_start).or_default().push(&run.run_id);
    }
    let listing = format!("{per_interval:#?}");
    assert_eq!(per_interval.len(), starts.len(), "one entry per interval: {listing}");
    for start in &starts {
        let ids = per_interval.get(&Some(*start)).map_or(0, Vec::len);
        assert_eq!(ids, 1, "interval starting {start}: {ids} runs\n{listing}");
    }
    assert_eq!(runs.len(), starts.len(), "{listing}");

    for index in [a, b] {
        let process = cluster.process(index);
        let (name, log) = (process.name.clone(), process.output());
        assert!(process.exited().is_none(), "{name} exited: {:?}\n{log}", process.exited());
        let errors = error_lines(&log);
        assert!(errors.is_empty(), "{name} reported errors: {errors:#?}\n{log}");
    }
    assert_eq!(migration_rows(&cluster), Some((expected, expected)), "no migration ran again");
}
