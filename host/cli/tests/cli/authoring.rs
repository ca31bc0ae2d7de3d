//! What a plugin author meets while writing and debugging a plugin: exit codes, memory at start,
//! `dags test` output and logs, and `tasks test` with upstream inputs.

use serde_json::{json, Value};

use crate::dags::CHAIN;
use crate::{plugin, Env};

const BROKEN: &str = r#"
id = "broken"
[tasks.boom]
plugin = "plugins/hostile.wasm"
params = { mode = "nope" }
"#;

const FAILING: &str = r#"
id = "failing"
[tasks.boom]
plugin = "plugins/hostile.wasm"
params = { mode = "exit", code = 3 }
[tasks.after]
plugin = "plugins/echo.wasm"
upstream = ["boom"]
trigger_rule = "all_done"
"#;

#[test]
fn an_exit_status_over_125_is_the_plugins_exit_code() {
    let env = Env::new();
    for code in [126, 200, 255] {
        let input = json!({"params": {"mode": "exit", "code": code}}).to_string();
        let run = env.run(&["plugin", "run", &plugin("hostile"), "--input", &input]);
        assert_eq!(run.code(), 1, "{}", run.stderr());
        assert!(run.reason().starts_with(&format!("sandflow: exit code {code} (plugin sha256:")), "{}", run.reason());
        assert!(!run.stderr().contains("host error"), "{}", run.stderr());
    }
}

/// Writes a command module with an initial memory of `mib` MiB into the home; returns its path.
fn big_memory_plugin(env: &Env, mib: u32) -> String {
    let pages = mib * 16;
    let bytes = wat::parse_str(format!(r#"(module (memory (export "memory") {pages}) (func (export "_start")))"#))
        .expect("valid WAT");
    let path = env.home().join(format!("memory-{mib}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn plugin_inspect_shows_the_memory_a_plugin_starts_with() {
    let env = Env::new();
    let path = big_memory_plugin(&env, 20);
    let out = env.run(&["plugin", "inspect", &path]).ok();
    assert!(out.contains("\nmemory:  20 MiB at start (counts toward the memory limit)\n"), "{out}");
    let json: Value = serde_json::from_str(&env.run(&["plugin", "inspect", &path, "--json"]).ok()).unwrap();
    assert_eq!(json["initial_memory_bytes"], json!(20 << 20), "{json}");
}

#[test]
fn a_try_that_cannot_start_says_how_much_memory_it_needs() {
    let env = Env::new();
    let path = big_memory_plugin(&env, 20);
    let run = env.run(&["plugin", "run", &path, "--memory-mb", "16"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let reason = run.reason();
    assert!(
        reason.starts_with("sandflow: this plugin needs 20 MiB at start; the limit is 16 MiB (plugin sha256:"),
        "{reason}"
    );
    env.run(&["plugin", "run", &path, "--memory-mb", "20"]).ok();
}

#[test]
fn dags_test_prints_the_end_of_a_failed_trys_log() {
    let env = Env::new();
    let dags = env.dags(&[("broken", BROKEN)]);
    let run = env.run(&["dags", "test", "broken", "--dags", &dags]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let out = run.stdout();
    let lines: Vec<&str> = out.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("[1/1] boom failed (try 1, ")).unwrap_or_else(|| panic!("{out}"));
    assert!(lines[at].contains("): exit code 1 (plugin sha256:"), "{out}");
    assert_eq!(lines[at + 1], "    log of try 1:", "{out}");
    assert!(lines[at + 2].starts_with("    | ") && lines[at + 2].ends_with("Z error: unknown mode `nope`"), "{out}");
}

#[test]
fn dags_test_show_output_prints_every_output_and_log() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    let out = env.run(&["dags", "test", "chain", "--dags", &dags, "--show-output"]).ok();
    for task in ["a", "b", "c"] {
        assert!(out.contains(&format!("\n== {task} (success)\noutput: {{")), "{out}");
        assert!(out.contains(&format!("Z echo: task {task} try 1\n")), "{out}");
    }
    assert!(out.contains(r#"output: {"inputs":{"a":{"inputs":{},"params":{"n":1}}},"params":{}}"#), "{out}");
    assert!(out.lines().last().unwrap().contains(" success in "), "{out}");
}

#[test]
fn dags_test_json_has_every_output_and_try() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN), ("broken", BROKEN)]);
    let run = env.run(&["dags", "test", "chain", "--dags", &dags, "--json"]);
    let json: Value = serde_json::from_str(&run.ok()).expect("stdout is the JSON document alone");
    assert!(run.stderr().contains("[3/3] c success"), "progress goes to stderr: {}", run.stderr());
    assert_eq!(json["run"]["state"], "success");
    let tasks = json["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    let b = tasks.iter().find(|t| t["task_id"] == "b").unwrap();
    assert_eq!(b["output"]["inputs"]["a"]["params"]["n"], 1, "{b}");
    assert!(b["tries"][0]["log"].as_str().unwrap().contains("echo: task b try 1"), "{b}");

    let run = env.run(&["dags", "test", "broken", "--dags", &dags, "--json"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let json: Value = serde_json::from_str(&run.stdout()).expect("JSON on failure too");
    let boom = json["tasks"].as_array().unwrap().iter().find(|t| t["task_id"] == "boom").unwrap().clone();
    assert_eq!(boom["state"], "failed");
    assert_eq!(boom["tries"][0]["outcome"], "exit_code", "{boom}");
    assert!(boom["tries"][0]["log"].as_str().unwrap().contains("error: unknown mode `nope`"), "{boom}");
}

/// `tasks test` and its result JSON (stdout).
fn task_test(env: &Env, args: &[&str]) -> Value {
    let out = env.run(&[&["tasks", "test"], args].concat()).ok();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn tasks_test_takes_upstream_outputs_from_inputs() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    let result = task_test(&env, &["chain", "b", "--dags", &dags, "--inputs", r#"{"a": {"x": 0.1}}"#]);
    assert_eq!(result["output"]["inputs"], json!({"a": {"x": 0.1}}));

    let file = env.home().join("inputs.json");
    std::fs::write(&file, r#"{"b": [1, 2]}"#).unwrap();
    let result = task_test(&env, &["chain", "c", "--dags", &dags, "--inputs", &format!("@{}", file.display())]);
    assert_eq!(result["output"]["inputs"], json!({"b": [1, 2]}));

    let run = env.run(&["tasks", "test", "chain", "b", "--dags", &dags, "--inputs", r#"{"c": 1}"#]);
    assert_eq!(run.code(), 2);
    assert_eq!(run.reason(), "error: --inputs names `c`, which is not an upstream task of `b` (its upstream tasks: a)");
    let run = env.run(&["tasks", "test", "chain", "b", "--dags", &dags, "--inputs", "[1]"]);
    assert_eq!(run.code(), 2);
    assert_eq!(
        run.reason(),
        r#"error: --inputs must be a JSON object ({"key": value, ...}), not a list (it starts "[1]")"#
    );
}

#[test]
fn tasks_test_takes_upstream_outputs_from_a_stored_run() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    env.run(&["standalone", "--dags", &dags, "--trigger", "chain", "--exit-when-done"]).ok();
    let result = task_test(&env, &["chain", "b", "--dags", &dags, "--from-run", "latest"]);
    assert_eq!(result["output"]["inputs"], json!({"a": {"params": {"n": 1}, "inputs": {}}}));

    let runs: Value = serde_json::from_str(&env.run(&["tasks", "list", "chain", "latest", "--json"]).ok()).unwrap();
    let run_id = runs["run"]["run_id"].as_str().unwrap().to_string();
    let over = r#"{"b": "mine"}"#;
    let result = task_test(&env, &["chain", "c", "--dags", &dags, "--from-run", &run_id, "--inputs", over]);
    assert_eq!(result["output"]["inputs"], json!({"b": "mine"}), "--inputs is laid over the run's outputs");

    let run = env.run(&["tasks", "test", "chain", "b", "--dags", &dags, "--from-run", "nope"]);
    assert_eq!(run.code(), 2);
    assert_eq!(run.reason(), "error: DAG `chain` has no run `nope` (see: sandflow dags show chain)");
}

#[test]
fn tasks_test_says_when_an_upstream_has_no_output_in_the_run() {
    let env = Env::new();
    let dags = env.dags(&[("failing", FAILING)]);
    env.run(&["standalone", "--dags", &dags, "--trigger", "failing", "--exit-when-done"]);
    let run = env.run(&["tasks", "test", "failing", "after", "--dags", &dags, "--from-run", "latest"]);
    let out = run.ok();
    let stderr = run.stderr();
    assert!(
        stderr.lines().any(|l| l.starts_with("warning: upstream task `boom` has no output in run manual__")
            && l.ends_with(" (it is failed); `after` runs without inputs.boom")),
        "{stderr}"
    );
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["output"]["inputs"], json!({}));
}
