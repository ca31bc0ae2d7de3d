//! Backfill, pools, clear and mark from the command line, and the example DAGs end to end.

use serde_json::Value;

use crate::dags::CHAIN;
use crate::Env;

const DAILY: &str = r#"
id = "daily"
schedule = "@daily"
start_date = "2026-01-01"
max_active_runs = 2
[tasks.work]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 150 }
"#;

#[test]
fn backfill_of_ten_days_keeps_max_active_runs() {
    let env = Env::new();
    let dags = env.dags(&[("daily", DAILY)]);
    env.load(&dags).ok();
    let run = env.run(&["dags", "backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-10"]);
    let out = run.ok();
    assert!(
        out.starts_with("backfill of daily: 10 intervals from 2026-01-01T00:00:00Z to 2026-01-10T00:00:00Z: 10 runs created, 0 failed runs cleared to rerun, 0 already ran\n"),
        "{out}"
    );
    assert!(out.contains("10 runs succeeded, 0 failed"), "{out}");
    assert!(!run.stderr().contains('\r') && !run.stderr().contains("runs ended"), "no bar in a pipe: {}", run.stderr());

    let shown: Value = serde_json::from_str(&env.run(&["dags", "show", "daily", "--json"]).ok()).unwrap();
    let runs = shown["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 10);
    let mut events = Vec::new();
    for run in runs {
        assert_eq!(run["run_type"], "backfill");
        assert_eq!(run["state"], "success");
        let at = |field: &str| chrono::DateTime::parse_from_rfc3339(run[field].as_str().unwrap()).unwrap();
        events.push((at("started_at"), 1));
        events.push((at("ended_at"), -1));
    }
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    assert_eq!(most, 2, "two runs at once, never three");

    let again = env.run(&["dags", "backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-10"]).ok();
    assert!(again.contains(": 0 runs created, 0 failed runs cleared to rerun, 10 already ran"), "{again}");

    // A range of runs cleared at once, then one marked by hand.
    let cleared = env.run(&["dags", "clear", "daily", "--from", "2026-01-01", "--to", "2026-01-03"]).ok();
    assert_eq!(cleared, "cleared 3 task instances in 3 runs (killed 0 running tries)\n");
    let marked = env.run(&["dags", "mark", "daily", "backfill__daily__2026-01-02T00:00:00Z", "failed"]).ok();
    assert_eq!(
        marked,
        "marked run backfill__daily__2026-01-02T00:00:00Z failed (1 unfinished task instance marked failed)\n"
    );
    let run = env.run(&["dags", "clear", "daily", "--from", "2025-01-01", "--to", "2025-01-03"]);
    assert_eq!(
        run.reason(),
        "error: DAG `daily` has no runs with a logical date from 2025-01-01 00:00:00 UTC to 2025-01-03 00:00:00 UTC"
    );
}

#[test]
fn backfill_refuses_what_it_cannot_do() {
    let env = Env::new();
    let dags = env.dags(&[("daily", DAILY), ("chain", CHAIN)]);
    env.load(&dags).ok();
    env.run(&["dags", "pause", "daily"]).ok();
    let cases: [(&[&str], &str); 4] = [
        (
            &["dags", "backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-02"],
            "error: DAG `daily` is paused, so its runs start no tasks: unpause it first (sandflow dags unpause daily)",
        ),
        (
            &["dags", "backfill", "chain", "--from", "2026-01-01", "--to", "2026-01-02"],
            "error: DAG `chain` has no schedule: a backfill needs one to cut intervals",
        ),
        (
            &["dags", "backfill", "daily", "--from", "yesterday", "--to", "2026-01-02"],
            "error: --from \"yesterday\" is not a date (2026-11-01) or an RFC 3339 time (2026-11-01T03:00:00Z)",
        ),
        (
            &["dags", "backfill", "daily", "--from", "2026-01-05", "--to", "2026-01-02"],
            "error: --to 2026-01-02 00:00:00 UTC is before --from 2026-01-05 00:00:00 UTC",
        ),
    ];
    for (args, expected) in cases {
        let run = env.run(args);
        assert_eq!(run.code(), 2, "{args:?}");
        assert_eq!(run.reason(), expected, "{args:?}");
    }
}

#[test]
fn pools_are_set_listed_and_deleted() {
    let env = Env::new();
    assert_eq!(env.run(&["pools", "set", "gpu", "2", "--description", "two cards"]).ok(), "pool gpu: 2 slots\n");
    let list = env.run(&["pools", "list"]).ok();
    assert!(list.contains("default_pool  128"), "{list}");
    assert!(list.contains("gpu           2      two cards"), "{list}");
    assert_eq!(env.run(&["pools", "delete", "gpu"]).ok(), "pool gpu deleted\n");
    assert_eq!(env.run(&["pools", "delete", "gpu"]).reason(), "error: no pool `gpu` (pools: default_pool)");
    assert_eq!(
        env.run(&["pools", "delete", "default_pool"]).reason(),
        "error: default_pool cannot be deleted (resize it with: sandflow pools set default_pool N)"
    );
    assert_eq!(
        env.run(&["pools", "set", "a b", "1"]).reason(),
        "error: pool name `a b`: use only letters, digits, \"_\", \".\" and \"-\""
    );
}

#[test]
fn clear_and_mark_without_a_running_scheduler_apply_at_once() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    env.run(&["standalone", "--dags", &dags, "--trigger", "chain", "--exit-when-done"]).ok();

    let out = env.run(&["tasks", "clear", "chain", "latest", "b", "--downstream"]).ok();
    assert_eq!(out, "cleared 2 task instances in 1 run (killed 0 running tries)\n");
    let json: Value = serde_json::from_str(&env.run(&["tasks", "list", "chain", "latest", "--json"]).ok()).unwrap();
    assert_eq!(json["run"]["state"], "running", "the run is open again");

    // A scheduler started later finishes the cleared work.
    let out = env.run(&["standalone", "--dags", &dags, "--exit-when-done"]).ok();
    assert!(out.contains(" b: success (try 2, "), "{out}");

    let out = env.run(&["tasks", "mark", "chain", "latest", "c", "failed"]).ok();
    assert!(out.starts_with("marked c failed in run manual__"), "{out}");
    let json: Value = serde_json::from_str(&env.run(&["tasks", "list", "chain", "latest", "--json"]).ok()).unwrap();
    assert_eq!(json["run"]["state"], "failed", "c is a leaf: the run failed");

    let run = env.run(&["tasks", "clear", "chain", "latest", "nope"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.reason().starts_with("error: run manual__") && run.reason().ends_with(" has no task `nope`"),
        "{}",
        run.reason()
    );
}

/// Copies the repository's example DAGs and the plugins they name into a scratch DAG folder.
fn example_dags(env: &Env) -> String {
    let dags = env.home().join("dags");
    std::fs::create_dir_all(dags.join("plugins")).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dags");
    for file in ["ml_training.toml", "wait_for_training.toml"] {
        std::fs::copy(repo.join(file), dags.join(file)).unwrap();
    }
    for stem in
        ["ml_generate", "ml_features", "logreg", "ml_evaluate", "ml_gate", "ml_publish", "noop", "echo", "sensors"]
    {
        std::fs::copy(sandflow_test_artifacts::path(stem), dags.join(format!("plugins/{stem}.wasm"))).unwrap();
    }
    dags.display().to_string()
}

#[test]
fn the_example_ml_pipeline_trains_one_model_per_customer_and_gates_publishing() {
    let env = Env::new();
    let dags = example_dags(&env);
    let out = env.run(&["dags", "test", "ml_training", "--dags", &dags]).ok();
    assert!(out.contains("] train[3] success (try 1, "), "{out}");
    assert!(out.contains("] gate success"), "{out}");
    assert!(out.contains("] publish success"), "{out}");
    assert!(out.contains("] report skipped (not chosen by branch gate)"), "{out}");

    let out = env.run(&["dags", "test", "ml_training", "--dags", &dags, "--conf", r#"{"min_auc": 0.99}"#]).ok();
    assert!(out.contains("] report success"), "{out}");
    assert!(out.contains("] publish skipped (not chosen by branch gate)"), "{out}");
}

#[test]
fn a_sensor_waits_for_another_dags_run() {
    let env = Env::new();
    let dags = example_dags(&env);
    let out = env
        .run(&[
            "standalone",
            "--dags",
            &dags,
            "--trigger",
            "wait_for_training",
            "--trigger",
            "ml_training",
            "--exit-when-done",
        ])
        .ok();
    assert!(
        out.contains(" wait_for_ml_training: up_for_reschedule (try 1, "),
        "the sensor waited at least once:\n{out}"
    );
    assert!(out.contains(" report_ready: success"), "{out}");
}

pub(crate) const REPLAYED: &str = r#"
id = "replayed"
schedule = "@daily"
start_date = "2026-01-01"
[tasks.make]
plugin = "plugins/grants.wasm"
params = { mode = "tree", files = { "data.csv" = "1,2,3" } }
[tasks.roll]
plugin = "plugins/grants.wasm"
upstream = ["make"]
params = { mode = "entropy", sleep_ms = 5 }
"#;

#[test]
fn a_recorded_try_replays_identically_and_a_changed_context_is_a_difference() {
    let env = Env::new();
    let dags = env.dags(&[("replayed", REPLAYED)]);
    std::fs::copy(sandflow_test_artifacts::path("grants"), format!("{dags}/plugins/grants.wasm")).unwrap();
    env.load(&dags).ok();
    env.run(&["dags", "backfill", "replayed", "--from", "2026-01-01", "--to", "2026-01-01"]).ok();
    let run = "backfill__replayed__2026-01-01T00:00:00Z";

    // Random numbers and clock readings, /in and /out: all the same again.
    for task in ["make", "roll"] {
        let out = env.run(&["tasks", "replay", "replayed", run, task]).ok();
        assert!(out.contains("identical: same outcome, result and artifacts"), "{out}");
        assert!(out.contains(&format!("replayed try 1 of {task} in run {run} (plugin sha256:")), "{out}");
    }
    let shown: Value =
        serde_json::from_str(&env.run(&["tasks", "replay", "replayed", run, "make", "--json"]).ok()).unwrap();
    assert_eq!(shown["identical"], Value::Bool(true), "{shown}");
    assert_eq!(shown["artifacts"][0]["name"], "data.csv", "{shown}");

    // The recorded context, changed: a difference, exit 1.
    let rolled: Value =
        serde_json::from_str(&env.run(&["tasks", "replay", "replayed", run, "roll", "--json"]).ok()).unwrap();
    let mut context: Value = serde_json::from_str(rolled["record"]["context"].as_str().unwrap()).unwrap();
    assert_eq!(context["task_id"], "roll");
    context["params"]["sleep_ms"] = Value::from(7);
    let file = env.home().join("context.json");
    std::fs::write(&file, serde_json::to_vec(&context).unwrap()).unwrap();
    let changed = env.run(&["tasks", "replay", "replayed", run, "roll", "--context", file.to_str().unwrap()]);
    assert_eq!(changed.code(), 1, "{}{}", changed.stdout(), changed.stderr());
    assert!(changed.stdout().contains("difference: context: not the recorded bytes"), "{}", changed.stdout());
    assert!(changed.stdout().contains("difference: result: recorded sha256:"), "{}", changed.stdout());
    assert!(changed.reason().contains("the replay of try 1 differs from it in 2 ways"), "{}", changed.reason());

    // Another plugin: a difference too.
    let echo = crate::plugin("echo");
    let other = env.run(&["tasks", "replay", "replayed", run, "make", "--plugin", &echo]);
    assert_eq!(other.code(), 1, "{}{}", other.stdout(), other.stderr());
    assert!(other.stdout().contains("difference: plugin: recorded sha256:"), "{}", other.stdout());
    assert!(
        other.stdout().contains("difference: artifact data.csv: recorded, not left by the replay"),
        "{}",
        other.stdout()
    );

    // What is not there says so.
    let none = env.run(&["tasks", "replay", "replayed", run, "roll", "--try", "5"]);
    assert_eq!(none.code(), 2);
    assert_eq!(none.reason(), format!("error: roll has no try 5 in run {run} (its tries: 1 to 1)"));
    let bad = env.run(&["tasks", "replay", "replayed", run, "roll", "--context", "/nonexistent/context.json"]);
    assert_eq!(bad.code(), 2);
    assert!(bad.reason().contains("/nonexistent/context.json: "), "{}", bad.reason());

    // Retention: recent artifacts stay; old ones go, and their blobs with them.
    let kept = env.run(&["artifacts", "gc", "--older-than", "1h", "--keep-runs", "0"]).ok();
    assert!(kept.starts_with("deleted 0 artifacts recorded before "), "{kept}");
    assert!(kept.ends_with(" and 0 blobs no artifact names (0 bytes)\n"), "{kept}");
    let kept = env.run(&["artifacts", "gc", "--older-than", "0s"]).ok();
    assert!(kept.starts_with("deleted 0 artifacts"), "the last 5 runs are kept: {kept}");
    let gone = env.run(&["artifacts", "gc", "--older-than", "0s", "--keep-runs", "0"]).ok();
    assert!(gone.starts_with("deleted 1 artifacts recorded before "), "{gone}");
    assert!(gone.contains(" and 1 blobs no artifact names "), "{gone}");
    assert_eq!(env.run(&["tasks", "artifacts", "replayed", run, "make", "--json"]).ok().trim(), "[]");
    // A replay whose inputs were collected says what is missing.
    let lost = env.run(&["tasks", "replay", "replayed", run, "roll"]);
    assert_eq!(lost.code(), 1, "{}{}", lost.stdout(), lost.stderr());
    assert!(lost.reason().contains("putting the recorded inputs in /in: "), "{}", lost.reason());
    let bad = env.run(&["artifacts", "gc", "--older-than", "soon"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
}
