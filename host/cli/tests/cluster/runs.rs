//! Many runs of a wide DAG (a mapped task, a branch, four layers of fan-out) through two
//! schedulers and three workers: every run succeeds, and every instance succeeded exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use sandflow_core::state::{RunState, TaskState};

use crate::harness::{tries_by_instance, Cluster};

const RUNS: usize = 20;

/// How many instances `mapped` has: one per element of `start`'s `params.items`.
const MAPPED: i64 = 5;

/// Four layers of six noop tasks between `start` and `join`, each layer downstream of every task
/// of the one before.
const LAYERS: [char; 4] = ['a', 'b', 'c', 'd'];
const WIDTH: usize = 6;

/// 30 tasks: `start` (echo, whose output holds the list `mapped` maps over), `mapped` (5
/// instances), `choose` (a branch that follows `left`, so `right` is skipped), `left`, `right`,
/// the 24 layer tasks, and `join` after all of them. Retries absorb a lease lost on a loaded
/// machine; the assertions are about successes, which a retry cannot make two of.
fn wide_dag() -> String {
    let layer = |c: char| format!("[{}]", (1..=WIDTH).map(|i| format!("{c}{i}")).collect::<Vec<_>>().join(", "));
    let chain = LAYERS.iter().map(|&c| layer(c)).collect::<Vec<_>>().join(" >> ");
    let mut dag = format!(
        r#"
id = "wide"
max_active_runs = {RUNS}
flow = [
    "start >> {chain} >> join",
    "start >> [mapped, choose]",
    "choose >> [left, right] >> join",
    "mapped >> join",
]
[defaults]
retries = 2
retry_delay = "1s"
[tasks.start]
plugin = "plugins/echo.wasm"
params = {{ items = [1, 2, 3, 4, 5] }}
[tasks.mapped]
plugin = "plugins/echo.wasm"
map_over = "inputs.start.params.items"
[tasks.choose]
plugin = "plugins/hostile.wasm"
kind = "branch"
params = {{ mode = "result", result = {{ branch = ["left"] }} }}
[tasks.left]
plugin = "plugins/noop.wasm"
[tasks.right]
plugin = "plugins/noop.wasm"
[tasks.join]
plugin = "plugins/noop.wasm"
trigger_rule = "none_failed_min_one_success"
"#
    );
    for c in LAYERS {
        for i in 1..=WIDTH {
            dag.push_str(&format!("[tasks.{c}{i}]\nplugin = \"plugins/noop.wasm\"\n"));
        }
    }
    dag
}

#[test]
fn two_schedulers_three_workers_run_twenty_runs() {
    let dag = wide_dag();
    let mut cluster = Cluster::new(&[("wide", &dag)]);
    cluster.scheduler();
    cluster.scheduler();
    for _ in 0..3 {
        cluster.worker(4, None, &[]);
    }
    cluster.until_loaded("wide");
    let run_ids: Vec<String> = (0..RUNS).map(|_| cluster.trigger("wide")).collect();
    let runs = cluster.until_within(Duration::from_secs(300), "20 runs to end", |c| {
        let rows: Option<Vec<_>> = run_ids.iter().map(|id| c.run_row(id)).collect();
        rows.filter(|rows| rows.iter().all(|r| matches!(r.state, RunState::Success | RunState::Failed)))
    });

    let mut tries_per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        for worker in cluster.try_workers(&run.run_id).into_values() {
            *tries_per_worker.entry(worker.unwrap_or_else(|| "(none)".into())).or_default() += 1;
        }
        let described = cluster.describe(&run.run_id);
        assert_eq!(run.state, RunState::Success, "{described}\n{}", cluster.logs());
        let instances = cluster.task_instances(&run.run_id);
        let tries = cluster.tries(&run.run_id);
        let by_instance = tries_by_instance(&tries);
        // The mapped task has its own row (map index -1, never tried) besides its five instances.
        assert_eq!(instances.len(), 30 + MAPPED as usize, "30 tasks and {MAPPED} mapped instances:\n{described}");
        let mapped: Vec<i64> = instances.iter().filter(|t| t.task_id == "mapped").map(|t| t.map_index).collect();
        assert_eq!(mapped, (-1..MAPPED).collect::<Vec<_>>(), "{described}");
        for ti in &instances {
            let key = (ti.task_id.clone(), ti.map_index);
            let its_tries = by_instance.get(&key).cloned().unwrap_or_default();
            if ti.task_id == "mapped" && ti.map_index == -1 {
                assert_eq!(ti.state, TaskState::Success, "the mapped task as a whole:\n{described}");
                assert!(its_tries.is_empty(), "only the mapped instances run:\n{described}");
                continue;
            }
            if ti.task_id == "right" {
                assert_eq!(ti.state, TaskState::Skipped, "the branch followed `left`:\n{described}");
                assert!(its_tries.is_empty(), "a skipped task never ran:\n{described}");
                continue;
            }
            assert_eq!(ti.state, TaskState::Success, "{}[{}]:\n{described}", ti.task_id, ti.map_index);
            let successes = its_tries.iter().filter(|t| t.outcome.as_deref() == Some("success")).count();
            assert_eq!(successes, 1, "{}[{}] has {successes} successful tries:\n{described}", ti.task_id, ti.map_index);
            let open: Vec<i64> = its_tries.iter().filter(|t| t.ended_at.is_none()).map(|t| t.try_number).collect();
            assert!(open.is_empty(), "{}[{}] tries {open:?} never ended:\n{described}", ti.task_id, ti.map_index);
        }
    }
    eprintln!("two_schedulers_three_workers_run_twenty_runs: tries per worker {tries_per_worker:?}");
    assert!(tries_per_worker.len() >= 2, "the work was shared between workers: {tries_per_worker:?}");
}
