//! `sandflow standalone`, `dags ...`, `tasks ...`, `db ...` as a user runs them.

use serde_json::Value;

use crate::Env;

pub const CHAIN: &str = r#"
id = "chain"
description = "three echoes"
[tasks.a]
plugin = "plugins/echo.wasm"
params = { n = 1 }
[tasks.b]
plugin = "plugins/echo.wasm"
upstream = ["a"]
[tasks.c]
plugin = "plugins/echo.wasm"
upstream = ["b"]
"#;

const FAILING: &str = r#"
id = "failing"
[tasks.boom]
plugin = "plugins/hostile.wasm"
params = { mode = "exit", code = 3 }
[tasks.after]
plugin = "plugins/noop.wasm"
upstream = ["boom"]
"#;

#[test]
fn dags_test_runs_one_run_in_process_without_touching_the_store() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    let out = env.run(&["dags", "test", "chain", "--dags", &dags]).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("testing chain (version v"), "{out}");
    assert!(lines[1].starts_with("[1/3] a success (try 1, "), "{out}");
    assert!(lines[2].starts_with("[2/3] b success (try 1, "), "{out}");
    assert!(lines[3].starts_with("[3/3] c success (try 1, "), "{out}");
    assert!(lines[4].starts_with("run manual__") && lines[4].contains(" success in "), "{out}");
    assert!(!env.home().join("sandflow.db").exists(), "the home's store was not created");
}

#[test]
fn dags_test_of_a_failing_dag_exits_1_with_the_reasons() {
    let env = Env::new();
    let dags = env.dags(&[("failing", FAILING)]);
    let run = env.run(&["dags", "test", "failing", "--dags", &dags]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    let out = run.stdout();
    assert!(out.contains("[1/2] boom failed (try 1, "), "{out}");
    assert!(out.contains("): exit code 3 (plugin sha256:"), "{out}");
    assert!(out.contains("[2/2] after upstream_failed (an upstream task failed)"), "{out}");
    assert!(
        run.reason().starts_with("sandflow: run manual__") && run.reason().contains(" failed after "),
        "{}",
        run.reason()
    );
}

#[test]
fn standalone_runs_a_triggered_dag_and_the_tools_read_it_back() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    let out = env.run(&["standalone", "--dags", &dags, "--trigger", "chain", "--exit-when-done"]).ok();
    assert!(out.contains("loaded DAG chain version v"), "{out}");
    assert!(out.contains(" c: success (try 1, "), "{out}");
    assert!(out.lines().last().unwrap().ends_with(": success"), "{out}");

    let list = env.run(&["tasks", "list", "chain", "latest"]).ok();
    assert!(list.starts_with("run manual__"), "{list}");
    for task in ["a ", "b ", "c "] {
        assert!(list.lines().any(|l| l.starts_with(task) && l.contains("success")), "{list}");
    }
    let json: Value = serde_json::from_str(&env.run(&["tasks", "list", "chain", "latest", "--json"]).ok()).unwrap();
    assert_eq!(json["run"]["state"], "success");
    assert_eq!(json["task_instances"].as_array().unwrap().len(), 3);

    let logs = env.run(&["tasks", "logs", "chain", "latest", "b"]);
    let text = logs.ok();
    assert!(text.ends_with("Z echo: task b try 1\n") && text.lines().count() == 1, "{text}");
    assert!(logs.stderr().starts_with("try 1 of b (sha256:"), "{}", logs.stderr());
    let run = env.run(&["tasks", "logs", "chain", "latest", "b", "--try", "5"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.reason().starts_with("error: task `b` of run manual__")
            && run.reason().ends_with(" has no try 5 (it has 1)"),
        "{}",
        run.reason()
    );

    let shown = env.run(&["dags", "show", "chain"]).ok();
    assert!(shown.contains("about:    three echoes"), "{shown}");
    assert!(shown.contains("\nc     b "), "{shown}");

    let listed = env.run(&["dags", "list"]).ok();
    assert!(listed.lines().nth(1).unwrap().starts_with("chain   v"), "{listed}");
    assert!(listed.contains("success manual__"), "{listed}");
}

#[test]
fn unknown_dags_runs_and_tasks_are_clear_errors() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    env.load(&dags).ok();
    let cases: [(&[&str], &str); 7] = [
        (&["dags", "trigger", "nope"], "error: no DAG `nope` (known: chain)"),
        (&["dags", "pause", "nope"], "error: no DAG `nope` (known: chain)"),
        (&["tasks", "list", "chain", "latest"], "error: DAG `chain` has no runs yet"),
        (&["tasks", "list", "chain", "nope"], "error: DAG `chain` has no run `nope` (see: sandflow dags show chain)"),
        (&["tasks", "list", "nope", "latest"], "error: no DAG `nope` (known: chain)"),
        (
            &["dags", "trigger", "chain", "--conf", "[1]"],
            r#"error: --conf must be a JSON object ({"key": value, ...}), not a list (it starts "[1]")"#,
        ),
        (
            &["dags", "trigger", "chain", "--conf", "{oops"],
            r#"error: --conf is not valid JSON: key must be a string at line 1 column 2 (it starts "{oops")"#,
        ),
    ];
    for (args, expected) in cases {
        let run = env.run(args);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        assert_eq!(run.reason(), expected, "{args:?}");
    }
    let run = env.run(&["tasks", "test", "chain", "zzz", "--dags", &dags]);
    assert_eq!(run.reason(), "error: DAG `chain` has no task `zzz` (tasks: a, b, c)");
}

#[test]
fn trigger_pause_and_unpause_write_to_the_store() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    env.load(&dags).ok();
    let out = env.run(&["dags", "trigger", "chain", "--conf", r#"{"k":1}"#, "--note", "try 2"]).ok();
    assert!(out.starts_with("created run manual__") && out.trim_end().ends_with(", queued)"), "{out}");
    let json: Value = serde_json::from_str(&env.run(&["tasks", "list", "chain", "latest", "--json"]).ok()).unwrap();
    assert_eq!(json["run"]["state"], "queued");
    assert_eq!(json["run"]["note"], "try 2");
    assert_eq!(json["run"]["conf"], serde_json::json!({"k": 1}), "conf is an object, not JSON in a string");
    assert_eq!(env.run(&["dags", "pause", "chain"]).ok(), "chain is paused\n");
    let listed = env.run(&["dags", "list", "--json"]).ok();
    let json: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(json["dags"][0]["paused"], true);
    assert_eq!(env.run(&["dags", "unpause", "chain"]).ok(), "chain is unpaused\n");
}

#[test]
fn broken_dag_files_are_reported_with_file_line_and_field() {
    let env = Env::new();
    let broken = [
        ("syntax", "id = \"syntax\"\n[tasks.a\nplugin = \"plugins/noop.wasm\"\n"),
        ("unknown_field", "id = \"unknown_field\"\n[tasks.a]\nplugin = \"plugins/noop.wasm\"\nretrys = 2\n"),
        ("cycle", "id = \"cycle\"\nflow = [\"a >> b >> a\"]\n[tasks.a]\nplugin = \"plugins/noop.wasm\"\n[tasks.b]\nplugin = \"plugins/noop.wasm\"\n"),
        ("missing", "id = \"missing\"\n[tasks.a]\nplugin = \"plugins/nothing.wasm\"\n"),
        ("cron", "id = \"cron\"\nschedule = \"61 * * * *\"\n[tasks.a]\nplugin = \"plugins/noop.wasm\"\n"),
    ];
    let dags = env.dags(&broken);
    let load = env.load(&dags);
    assert_eq!(load.code(), 2, "{}", load.stderr());
    assert_eq!(load.reason(), "error: 5 of the DAG files did not load");
    let run = env.run(&["dags", "list"]);
    let out = run.ok();
    for (name, _) in broken {
        assert!(out.contains(&format!("import error in {dags}/{name}.toml:")), "{name}: {out}");
        assert!(load.stderr().contains(&format!("could not load {dags}/{name}.toml:")), "{name}: {}", load.stderr());
        assert_eq!(out.matches(&format!("import error in {dags}/{name}.toml:")).count(), 1, "{name} once: {out}");
    }
    assert!(run.stderr().is_empty(), "`dags list` reads the store and says each import error once: {}", run.stderr());
    assert!(
        out.contains("unknown_field.toml:4:1: tasks.a.retrys: unknown field \"retrys\", expected one of \"plugin\""),
        "{out}"
    );
    assert!(out.contains("cycle.toml:2:17: flow[0]: cycle: a -> b -> a"), "{out}");
    assert!(out.contains("syntax.toml:2:9: unclosed table, expected `]`"), "{out}");
    assert!(
        out.contains(&format!("missing.toml:3:10: tasks.a.plugin: no such file: {dags}/plugins/nothing.wasm")),
        "{out}"
    );
    assert!(out.contains("cron.toml:2:12: schedule: invalid cron expression \"61 * * * *\""), "{out}");
}

#[test]
fn a_home_whose_database_is_not_a_database_is_refused() {
    let env = Env::new();
    std::fs::write(env.home().join("sandflow.db"), vec![b'z'; 4096]).unwrap();
    let run = env.run(&["tasks", "list", "chain", "latest"]);
    assert_eq!(run.code(), 2);
    assert_eq!(
        run.reason(),
        format!(
            "error: {}/sandflow.db is not a Sandflow database (not even SQLite): move it away or choose another --home",
            env.home().display()
        )
    );
    let run = env.run(&["db", "reset"]);
    assert_eq!(run.code(), 2);
    assert!(run.reason().ends_with(": run again with --yes"), "{}", run.reason());
    assert_eq!(std::fs::read(env.home().join("sandflow.db")).unwrap(), vec![b'z'; 4096], "nothing was touched");
}

#[test]
fn db_init_and_reset() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    assert!(env.run(&["db", "init"]).ok().starts_with("database ready at "));
    env.load(&dags).ok();
    env.run(&["dags", "trigger", "chain"]).ok();
    assert!(env.run(&["db", "reset", "--yes"]).ok().starts_with("database reset at "));
    assert_eq!(env.run(&["tasks", "list", "chain", "latest"]).reason(), "error: no DAG `chain` (no DAGs are loaded)");
}
