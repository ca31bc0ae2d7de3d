//! A pool's slots are counted in the database, so they hold across workers: three workers with
//! four slots each never run more than the pool's two tries at once.

use chrono::{DateTime, Utc};
use sandflow_core::state::RunState;
use sandflow_store::TryRow;

use crate::harness::Cluster;

/// Ten independent tasks of about 300 ms in pool `small`.
fn pooled_dag() -> String {
    let mut dag = String::from("id = \"pooled\"\n");
    for i in 0..10 {
        dag.push_str(&format!(
            "[tasks.p{i}]\nplugin = \"plugins/hostile.wasm\"\npool = \"small\"\nparams = {{ mode = \"sleep\", ms = 300 }}\n"
        ));
    }
    dag
}

/// The most tries running at one instant, from their start and end times. A try that ends at
/// the instant another starts does not overlap it (its slot was handed on).
fn max_overlap(tries: &[TryRow]) -> usize {
    let mut events: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for t in tries {
        events.push((t.started_at, 1));
        events.push((t.ended_at.expect("every try of an ended run has ended"), -1));
    }
    // Ends (-1) before starts (+1) at the same instant.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in events {
        now += change;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn a_pool_of_two_holds_across_three_workers() {
    let dag = pooled_dag();
    let mut cluster = Cluster::new(&[("pooled", &dag)]);
    cluster.cli(&["pools", "set", "small", "2"]).ok();
    cluster.scheduler();
    for _ in 0..3 {
        cluster.worker(4, None, &[]);
    }
    cluster.until_loaded("pooled");
    let run_id = cluster.trigger("pooled");
    let run = cluster.until_ended(std::slice::from_ref(&run_id)).remove(0);
    let described = cluster.describe(&run_id);
    assert_eq!(run.state, RunState::Success, "{described}\n{}", cluster.logs());
    let tries = cluster.tries(&run_id);
    assert_eq!(tries.len(), 10, "one try per task:\n{described}");
    let workers = cluster.try_workers(&run_id);
    let timeline: Vec<String> = tries
        .iter()
        .map(|t| {
            let worker = workers.get(&(t.task_id.clone(), t.map_index, t.try_number)).cloned().flatten();
            format!("{} {} .. {:?} on {worker:?}", t.task_id, t.started_at, t.ended_at)
        })
        .collect();
    eprintln!("a_pool_of_two_holds_across_three_workers:\n{}", timeline.join("\n"));
    let most = max_overlap(&tries);
    assert!(most <= 2, "{most} tries of pool `small` (2 slots) ran at once:\n{}", timeline.join("\n"));
    assert_eq!(most, 2, "the pool's two slots were both used at some point:\n{}", timeline.join("\n"));
}
