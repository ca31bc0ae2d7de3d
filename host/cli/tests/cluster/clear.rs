//! `sandflow tasks clear` from a CLI process of its own reaches a try running in a worker
//! process: the try is killed within two seconds, and the instance runs again.

use sandflow_store::TryRow;

use crate::harness::Cluster;

/// One task that would take 30 s if left alone.
const LONG: &str = r#"
id = "long"
[tasks.long]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 30000 }
"#;

fn long_tries(cluster: &mut Cluster, run_id: &str) -> Vec<TryRow> {
    let mut tries: Vec<TryRow> = cluster.tries(run_id).into_iter().filter(|t| t.task_id == "long").collect();
    tries.sort_by_key(|t| t.try_number);
    tries
}

#[test]
fn clearing_a_try_running_on_another_worker_kills_it() {
    let mut cluster = Cluster::new(&[("long", LONG)]);
    cluster.scheduler();
    let worker = cluster.worker(2, None, &[]);
    let worker = cluster.process(worker).name.clone();
    cluster.until_loaded("long");
    let run_id = cluster.trigger("long");
    cluster
        .until("the first try running", |c| long_tries(c, &run_id).first().filter(|t| t.outcome.is_none()).map(|_| ()));
    // Let the plugin get into its sleep (past compiling and instantiating).
    std::thread::sleep(std::time::Duration::from_millis(500));

    let asked = chrono::Utc::now();
    let cleared = cluster.cli(&["tasks", "clear", "long", &run_id, "long"]).ok();
    assert!(cleared.starts_with("cleared 1 task instance in 1 run"), "{cleared}");
    let first = cluster
        .until("the first try to end", |c| long_tries(c, &run_id).into_iter().next().filter(|t| t.ended_at.is_some()));
    let ended = first.ended_at.unwrap();
    let after = ended - asked;
    let context = format!("clear printed: {cleared}\nfirst try: {first:?}\n{}", cluster.describe(&run_id));
    assert_eq!(first.outcome.as_deref(), Some("killed"), "{context}");
    let ran_on = cluster.try_workers(&run_id).get(&("long".to_string(), -1, 1)).cloned().flatten();
    assert_eq!(ran_on.as_deref(), Some(worker.as_str()), "the try ran in the worker process:\n{context}");
    assert!(
        after <= chrono::Duration::seconds(2),
        "the try ended {after} after the clear was asked (30 s if nobody killed it):\n{context}\n{}",
        cluster.logs()
    );

    let second = cluster
        .until("the cleared instance's second try", |c| long_tries(c, &run_id).into_iter().find(|t| t.try_number == 2));
    assert!(second.started_at >= ended, "the second try started after the first ended: {second:?}\n{context}");
}
