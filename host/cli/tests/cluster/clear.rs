//! `sandflow tasks clear` from a CLI process of its own reaches a try running in a worker
//! process: the try is killed within two seconds, and then the instance runs again.

use sandflow_store::TryRow;

use crate::harness::Cluster;

/// One task that would take 30 s if left alone.
const LONG: &str = r#"
id = "long"
[tasks.long]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 30000 }
"#;

/// Two tries of the same plugin at once, one for each one-slot worker: each worker compiles the
/// plugin (seconds on a loaded machine, and a kill does not cut a compile short), so that the
/// long task's try is in the plugin's sleep when it is cleared.
const WARM: &str = r#"
id = "warm"
[tasks.w1]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 1500 }
[tasks.w2]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 1500 }
"#;

fn long_tries(cluster: &mut Cluster, run_id: &str) -> Vec<TryRow> {
    let mut tries: Vec<TryRow> = cluster.tries(run_id).into_iter().filter(|t| t.task_id == "long").collect();
    tries.sort_by_key(|t| t.try_number);
    tries
}

#[test]
fn clearing_a_try_running_on_another_worker_kills_it() {
    let mut cluster = Cluster::new(&[("long", LONG), ("warm", WARM)]);
    cluster.scheduler();
    // Two workers of one slot each: while the first try holds one, the rerun can only go to the
    // other, the moment it is queued; so the order of the kill and the rerun shows every time.
    let workers: Vec<String> = (0..2)
        .map(|_| {
            let index = cluster.worker(1, None, &[]);
            cluster.process(index).name.clone()
        })
        .collect();
    cluster.until_loaded("long");
    cluster.until_loaded("warm");
    let mut warmed = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let warm = cluster.trigger("warm");
        cluster.until_ended(std::slice::from_ref(&warm));
        warmed.extend(cluster.try_workers(&warm).into_values().flatten());
        if warmed.len() == workers.len() {
            break;
        }
    }
    assert_eq!(warmed.len(), workers.len(), "both workers ran the plugin once: {warmed:?}\n{}", cluster.logs());
    let run_id = cluster.trigger("long");
    cluster
        .until("the first try running", |c| long_tries(c, &run_id).first().filter(|t| t.outcome.is_none()).map(|_| ()));
    // Let the plugin get into its sleep (past instantiating).
    std::thread::sleep(std::time::Duration::from_millis(500));

    let asked = chrono::Utc::now();
    let cleared = cluster.cli(&["tasks", "clear", "long", &run_id, "long"]).ok();
    assert!(cleared.starts_with("cleared 1 task instance in 1 run"), "{cleared}");
    let first = cluster
        .until("the first try to end", |c| long_tries(c, &run_id).into_iter().next().filter(|t| t.ended_at.is_some()));
    let ended = first.ended_at.unwrap();
    // From the moment the clear was recorded (the actions table), not from the CLI process's
    // start: what is timed is the clear reaching the worker, not a process starting up.
    let store = cluster.store().clone();
    let action = cluster.block_on(store.action(1)).expect("reading the clear's action").expect("the clear's action");
    let after = ended - action.requested_at;
    let context = format!(
        "clear printed: {cleared}\nasked at {asked} by the test, recorded at {}, done at {:?}\nfirst try: {first:?}\n{}",
        action.requested_at,
        action.done_at,
        cluster.describe(&run_id)
    );
    assert_eq!(first.outcome.as_deref(), Some("killed"), "{context}");
    let ran_on = cluster.try_workers(&run_id).get(&("long".to_string(), -1, 1)).cloned().flatten();
    assert!(
        ran_on.as_ref().is_some_and(|w| workers.contains(w)),
        "the try ran in a worker process: {ran_on:?}\n{context}"
    );
    assert!(
        after <= chrono::Duration::seconds(2),
        "the try ended {after} after the clear was recorded (30 s if nobody killed it):\n{context}\n{}",
        cluster.logs()
    );

    let second = cluster
        .until("the cleared instance's second try", |c| long_tries(c, &run_id).into_iter().find(|t| t.try_number == 2));
    // DESIGN §5: clearing kills the running try first; a rerun that starts before the old try
    // has stopped runs the task twice at once.
    let second_on = cluster.try_workers(&run_id).get(&("long".to_string(), -1, 2)).cloned().flatten();
    assert!(
        second.started_at >= ended,
        "the second try (on {second_on:?}) started {} before the first (on {ran_on:?}) ended: {second:?}\n{context}",
        ended - second.started_at
    );
}
