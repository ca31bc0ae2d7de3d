//! `kill -9` of workers and schedulers at random moments while runs go on: every run still
//! succeeds, every try a kill cut short is recorded `interrupted`, no try is left open, and no
//! instance succeeds twice.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sandflow_core::state::{RunState, TaskState};

use crate::harness::{tries_by_instance, Cluster, Rng};

const ROUNDS: usize = 20;

/// The seed of the kills' times and victims: fixed, so that a failure's choices can be replayed
/// (the processes' timing still varies from one machine to the next).
const SEED: u64 = 0x5A4D_F10E;

/// Tries of 200 to 400 ms (the hostile plugin's `sleep`), so that a kill finds tries running;
/// enough retries that an instance hit by several kills in a row still ends well (each kill
/// interrupts at most one try of an instance).
const KILLABLE: &str = r#"
id = "killable"
max_active_runs = 20
flow = ["first >> [p1, p2, p3, p4] >> last"]
[defaults]
retries = 6
retry_delay = "100ms"
[tasks.first]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 300 }
[tasks.p1]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 400 }
[tasks.p2]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 400 }
[tasks.p3]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 400 }
[tasks.p4]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 400 }
[tasks.last]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 200 }
"#;

/// Workers with a short lease, so that a killed worker's tries are recovered within seconds.
const LEASE: &str = "2s";

#[test]
fn kill_nine_workers_and_schedulers() {
    let mut cluster = Cluster::new(&[("killable", KILLABLE)]);
    cluster.scheduler();
    cluster.scheduler();
    for _ in 0..3 {
        cluster.worker(2, Some(LEASE), &[]);
    }
    cluster.until_loaded("killable");

    let mut rng = Rng::new(SEED);
    let mut kills = Vec::new();
    // Each killed worker's name and the moment it was gone.
    let mut killed_workers: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut run_ids = Vec::new();
    for round in 0..ROUNDS {
        let run_id = cluster.trigger("killable");
        // A random moment of the runs in flight: this one's first task, or the others' later ones.
        std::thread::sleep(Duration::from_millis(200 + rng.below(1300)));
        // Two kills in three hit a worker: the tries are theirs.
        let role = if rng.below(3) < 2 { "worker" } else { "scheduler" };
        let alive = cluster.alive(role);
        assert!(!alive.is_empty(), "round {round}: no {role} alive (one exited by itself?)\n{}", cluster.logs());
        let victim = alive[rng.below(alive.len() as u64) as usize];
        let process = cluster.process(victim);
        let name = process.name.clone();
        process.kill();
        if role == "worker" {
            killed_workers.insert(name.clone(), Utc::now());
        }
        kills.push(format!("round {round}: kill -9 {name} (run {run_id})"));
        match role {
            "worker" => cluster.worker(2, Some(LEASE), &[]),
            _ => cluster.scheduler(),
        };
        run_ids.push(run_id);
    }
    let kills = kills.join("\n");

    let runs = cluster.until_within(Duration::from_secs(300), "the 20 runs to end", |c| {
        let rows: Option<Vec<_>> = run_ids.iter().map(|id| c.run_row(id)).collect();
        rows.filter(|rows| rows.iter().all(|r| matches!(r.state, RunState::Success | RunState::Failed)))
    });

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        let described = cluster.describe(&run.run_id);
        let context = format!("seed {SEED:#x}, kills:\n{kills}\n{described}");
        assert_eq!(run.state, RunState::Success, "{context}\n{}", cluster.logs());
        let tries = cluster.tries(&run.run_id);
        let workers = cluster.try_workers(&run.run_id);
        for t in &tries {
            let worker = workers.get(&(t.task_id.clone(), t.map_index, t.try_number)).cloned().flatten();
            let worker =
                worker.unwrap_or_else(|| panic!("{}[{}] try {}: no worker", t.task_id, t.map_index, t.try_number));
            let killed_at = killed_workers.get(&worker);
            // Only a kill interrupts: a live worker keeps its leases, and a scheduler that starts
            // (or takes over) leaves a live worker's tries alone.
            if t.outcome.as_deref() == Some("interrupted") {
                assert!(
                    killed_at.is_some(),
                    "{}[{}] try {} was interrupted though its worker {worker} was never killed:\n{context}",
                    t.task_id,
                    t.map_index,
                    t.try_number
                );
            }
            // A dead worker reports nothing: its successes all ended before it was killed.
            if let (Some(at), Some("success"), Some(ended)) = (killed_at, t.outcome.as_deref(), t.ended_at) {
                assert!(
                    ended <= *at,
                    "{}[{}] try {} succeeded at {ended} on {worker}, killed at {at}:\n{context}",
                    t.task_id,
                    t.map_index,
                    t.try_number
                );
            }
            let outcome = t.outcome.clone().unwrap_or_else(|| "(open)".into());
            *outcomes.entry(outcome).or_default() += 1;
            // The plugin never fails by itself: a try that did not succeed was cut short by a kill.
            assert!(
                t.outcome.is_some() && t.ended_at.is_some(),
                "{}[{}] try {} is still open after its run ended:\n{context}",
                t.task_id,
                t.map_index,
                t.try_number
            );
            assert!(
                matches!(t.outcome.as_deref(), Some("success" | "interrupted")),
                "{}[{}] try {} ended {:?} ({:?}); a try cut short by a kill is `interrupted`:\n{context}",
                t.task_id,
                t.map_index,
                t.try_number,
                t.outcome,
                t.message
            );
        }
        let by_instance = tries_by_instance(&tries);
        for ti in cluster.task_instances(&run.run_id) {
            let what = format!("{}[{}]", ti.task_id, ti.map_index);
            assert_eq!(ti.state, TaskState::Success, "{what}:\n{context}");
            let its = by_instance.get(&(ti.task_id.clone(), ti.map_index)).cloned().unwrap_or_default();
            let numbers: Vec<i64> = its.iter().map(|t| t.try_number).collect();
            assert_eq!(numbers, (1..=its.len() as i64).collect::<Vec<_>>(), "{what}: try numbers:\n{context}");
            assert_eq!(ti.try_number, its.len() as i64, "{what}: the instance's try number is its last try's");
            let successes = its.iter().filter(|t| t.outcome.as_deref() == Some("success")).count();
            assert_eq!(successes, 1, "{what}: {successes} tries report success:\n{context}");
            assert_eq!(its.last().unwrap().outcome.as_deref(), Some("success"), "{what}: its last try succeeded");
        }
    }
    eprintln!("kill_nine_workers_and_schedulers: seed {SEED:#x}, try outcomes {outcomes:?}\n{kills}");
    assert!(
        outcomes.get("interrupted").copied().unwrap_or(0) >= 1,
        "no kill hit a running try ({outcomes:?}): the test tested nothing\n{kills}"
    );
}
