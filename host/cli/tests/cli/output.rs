//! What people and scripts read: closed pipes, hostile values in tables, JSON as JSON, flags.

use std::process::Stdio;

use serde_json::Value;

use crate::dags::CHAIN;
use crate::{plugin, Env, Run};

/// Runs `sandflow ARGS` with a stdout whose reader has already gone, as `| head -c 0` would.
fn with_closed_stdout(env: &Env, args: &[&str]) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = env.command().args(args).stdout(Stdio::from(writer)).stderr(Stdio::piped()).output().unwrap();
    Run(output)
}

#[test]
fn commands_whose_reader_went_away_exit_quietly() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    env.run(&["standalone", "--dags", &dags, "--trigger", "chain", "--exit-when-done"]).ok();
    let commands: [&[&str]; 7] = [
        &["dags", "list"],
        &["dags", "show", "chain"],
        &["dags", "test", "chain", "--dags", &dags],
        &["tasks", "list", "chain", "latest"],
        &["tasks", "logs", "chain", "latest", "b"],
        &["plugin", "run", &plugin("echo"), "--input", r#"{"params":{"x":1}}"#],
        &["plugin", "inspect", &plugin("echo")],
    ];
    for args in commands {
        let run = with_closed_stdout(&env, args);
        assert!(!run.stderr().contains("panicked"), "{args:?}: {}", run.stderr());
        assert_eq!(run.code(), 0, "{args:?}: {}", run.stderr());
    }
}

#[test]
fn a_standalone_whose_output_went_away_keeps_running_its_runs() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    let run = with_closed_stdout(&env, &["standalone", "--dags", &dags, "--trigger", "chain", "--exit-when-done"]);
    assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let json: Value = serde_json::from_str(&env.run(&["tasks", "list", "chain", "latest", "--json"]).ok()).unwrap();
    assert_eq!(json["run"]["state"], "success", "the run ended although nobody read the output");
}

/// A plugin whose result has a 70,000-character field name that starts with escape sequences: the
/// failure reason (invalid result JSON: unknown field ...) is the plugin's to choose.
fn hostile_reason_dag() -> String {
    let name = format!("\\u001b]0;pwned\\u0007\\u001b[2J\\r{}", "x".repeat(70_000));
    format!(
        "id = \"long\"\n[tasks.t]\nplugin = \"plugins/hostile.wasm\"\nretries = 0\n\
         params = {{ mode = \"result\", result = {{ \"{name}\" = 1 }} }}\n"
    )
}

#[test]
fn a_plugin_controlled_reason_of_70000_characters_breaks_no_table() {
    let env = Env::new();
    let dags = env.dags(&[("long", &hostile_reason_dag())]);
    let run = env.run(&["standalone", "--dags", &dags, "--trigger", "long", "--exit-when-done"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(!run.stdout().contains('\x1b'), "the server's own output escapes it too");
    for args in
        [&["tasks", "list", "long", "latest"][..], &["dags", "list"], &["tasks", "tries", "long", "latest", "t"]]
    {
        let out = env.run(args).ok();
        assert!(!out.contains('\x1b') && !out.contains('\x07') && !out.contains('\r'), "{args:?} escapes: {out:?}");
        assert!(out.lines().all(|l| l.chars().count() < 600), "{args:?} cuts long cells: {}", out.len());
    }
    let listed = env.run(&["tasks", "list", "long", "latest"]).ok();
    assert!(listed.contains("invalid result JSON: unknown field `\\u{1b}]0;pwned\\u{7}"), "{listed}");
    let json: Value = serde_json::from_str(&env.run(&["tasks", "list", "long", "latest", "--json"]).ok()).unwrap();
    let reason = json["task_instances"][0]["reason"].as_str().unwrap();
    assert!(reason.len() > 70_000 && reason.contains('\x1b'), "--json keeps the stored value whole");
}

#[test]
fn ids_longer_than_the_cap_are_refused_at_load() {
    let env = Env::new();
    let long_id = "d".repeat(300);
    let long_task = "t".repeat(70_000);
    let dags = env.dags(&[
        ("long_id", &format!("id = \"{long_id}\"\n[tasks.a]\nplugin = \"plugins/noop.wasm\"\n")),
        ("long_task", &format!("id = \"long_task\"\n[tasks.{long_task}]\nplugin = \"plugins/noop.wasm\"\n")),
    ]);
    let load = env.load(&dags);
    assert_eq!(load.code(), 2);
    let err = load.stderr();
    assert!(err.contains("long_id.toml:1:6: id: id \"dddd"), "{err}");
    assert!(err.contains("is 300 characters long; the limit is 250"), "{err}");
    assert!(err.contains("is 70000 characters long; the limit is 250"), "{err}");
    assert!(err.len() < 10_000, "the message quotes the start of the id, not all of it: {}", err.len());
    assert!(env.run(&["dags", "list"]).ok().lines().count() > 2, "dags list still answers");
}

#[test]
fn json_output_holds_objects_not_json_in_strings() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    env.load(&dags).ok();
    env.run(&["dags", "trigger", "chain", "--conf", r#"{"customers":["acme"]}"#]).ok();
    env.run(&["standalone", "--dags", &dags, "--exit-when-done"]).ok();
    let json: Value = serde_json::from_str(&env.run(&["tasks", "list", "chain", "latest", "--json"]).ok()).unwrap();
    assert_eq!(json["run"]["conf"], serde_json::json!({"customers": ["acme"]}));
    let a = json["task_instances"].as_array().unwrap().iter().find(|t| t["task_id"] == "a").unwrap();
    assert_eq!(a["output"]["params"], serde_json::json!({"n": 1}), "{a}");
    assert!(a["metrics"].is_object(), "{a}");
    assert_eq!(a["latest_try"]["outcome"], "success", "{a}");
    assert!(a["latest_try"]["fuel_used"].as_i64().unwrap() > 0, "{a}");
    let shown: Value = serde_json::from_str(&env.run(&["dags", "show", "chain", "--json"]).ok()).unwrap();
    assert!(shown["runs"][0]["conf"].is_object(), "{shown}");
}

#[test]
fn tasks_tries_shows_what_each_try_used() {
    let env = Env::new();
    let dags = env.dags(&[(
        "flaky",
        "id = \"flaky\"\n[tasks.f]\nplugin = \"plugins/hostile.wasm\"\nretries = 2\nretry_delay = \"0s\"\n\
         params = { mode = \"flaky\", succeed_on_try = 2 }\n",
    )]);
    env.run(&["standalone", "--dags", &dags, "--trigger", "flaky", "--exit-when-done"]).ok();
    let table = env.run(&["tasks", "tries", "flaky", "latest", "f"]).ok();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("try  outcome    plugin") && lines[0].contains("fuel"), "{table}");
    assert!(lines[1].starts_with("1    exit_code  sha256:"), "{table}");
    assert!(lines[2].starts_with("2    success    sha256:"), "{table}");
    let json: Value =
        serde_json::from_str(&env.run(&["tasks", "tries", "flaky", "latest", "f", "--json"]).ok()).unwrap();
    let tries = json["tries"].as_array().unwrap();
    assert_eq!(tries.len(), 2);
    assert!(tries[1]["fuel_used"].as_i64().unwrap() > 0 && tries[1]["peak_memory_bytes"].as_i64().unwrap() > 0);
    assert!(tries[1]["wall_seconds"].as_f64().unwrap() > 0.0);
    let listed = env.run(&["tasks", "list", "flaky", "latest"]).ok();
    assert!(listed.lines().nth(1).unwrap().contains("fuel") && listed.contains(" MiB"), "{listed}");
    let run = env.run(&["tasks", "tries", "flaky", "latest", "nope"]);
    assert_eq!(run.code(), 2);
    assert!(run.reason().ends_with("has no task `nope` (tasks: f)"), "{}", run.reason());
}

#[test]
fn conf_comes_from_a_file_and_bad_flags_say_so_at_once() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    env.load(&dags).ok();
    let file = env.home().join("conf.json");
    std::fs::write(&file, r#"{"from": "a file"}"#).unwrap();
    env.run(&["dags", "trigger", "chain", "--conf", &format!("@{}", file.display())]).ok();
    let json: Value = serde_json::from_str(&env.run(&["tasks", "list", "chain", "latest", "--json"]).ok()).unwrap();
    assert_eq!(json["run"]["conf"], serde_json::json!({"from": "a file"}));

    let huge = format!("[{}]", "1,".repeat(50_000) + "1");
    let run = env.run(&["dags", "trigger", "chain", "--conf", &huge]);
    assert_eq!(run.code(), 2);
    assert!(run.reason().len() < 300, "only the start is quoted: {}", run.reason());
    let run = env.run(&["dags", "trigger", "chain", "--conf", "@/no/such/file.json"]);
    assert!(run.reason().starts_with("error: --conf @/no/such/file.json: "), "{}", run.reason());
    let run = env.run(&["dags", "trigger", "chain", "--conf", "@/dev/zero"]);
    assert_eq!(run.reason(), "error: --conf @/dev/zero: not a regular file");

    let run = env.run(&["standalone", "--dags", &dags, "--parallelism", "0"]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("must be at least 1"), "{}", run.stderr());
    let run = env.run(&["dags", "load", "--dags", "/etc/passwd"]);
    assert_eq!(run.reason(), "error: the DAG folder /etc/passwd is not a folder (give one with --dags DIR)");
}

#[test]
fn warnings_in_a_file_carry_no_colour_codes() {
    let env = Env::new();
    let dags = env.dags(&[("broken", "id = \"broken\"\n[tasks.a]\nplugin = \"plugins/nothing.wasm\"\n")]);
    let run = env.run(&["standalone", "--dags", &dags, "--exit-when-done"]);
    assert!(run.stderr().contains("WARN"), "{}", run.stderr());
    assert!(!run.stderr().contains('\x1b'), "{:?}", run.stderr());
}

#[test]
fn bench_finds_the_noop_plugin_where_the_readme_builds_it() {
    let env = Env::new();
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cwd.path().join("dags/plugins")).unwrap();
    let run = Run(env.command().args(["bench", "--tasks", "2"]).current_dir(cwd.path()).output().unwrap());
    assert_eq!(run.code(), 2);
    assert!(run.reason().contains("dags/plugins/noop.wasm or target/plugins/noop.wasm"), "{}", run.reason());
    std::fs::copy(plugin("noop"), cwd.path().join("dags/plugins/noop.wasm")).unwrap();
    let run = Run(env.command().args(["bench", "--tasks", "2"]).current_dir(cwd.path()).output().unwrap());
    assert!(run.ok().contains("tasks per second:"), "{}", run.stdout());
}

#[test]
fn bench_http_prints_every_figure_on_a_small_store() {
    let env = Env::new();
    let args = ["bench-http", "--runs", "10500", "--clients", "4", "--seconds", "1", "--samples", "5", "--plugin"];
    let noop = plugin("noop");
    let run = Run(env.command().args(args).arg(&noop).output().unwrap());
    let out = run.ok();
    for figure in
        ["triggers: ", "list runs, page 1 ", "list runs, page 100 by cursor ", "list runs, page 100 by offset "]
    {
        assert!(out.contains(figure), "{figure}: {out}");
    }
    assert!(out.contains(" 0 errors)"), "every trigger was accepted: {out}");
}
