//! Operators in seven languages: every example through `plugin run` and `plugin test` (its golden
//! files), all of them together in `dags/polyglot.toml` through the scheduler, and a project made by
//! `plugin new` in each language, built with its one command. The toolchains and the examples in
//! languages other than Rust and C are built by scripts/test.sh (sandflow_test_artifacts::polyglot_dir).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::Env;

/// Each example: the plugin's path, and its folder in plugins/ (its golden files in tests/).
fn examples() -> Vec<(PathBuf, &'static str)> {
    let polyglot = |stem| sandflow_test_artifacts::polyglot_path(stem);
    let built = |stem| sandflow_test_artifacts::path(stem);
    vec![
        (polyglot("py_parse_csv"), "py-parse-csv"),
        (polyglot("js_clean"), "js-clean"),
        (built("c-stats"), "c-stats"),
        (polyglot("zig_histogram"), "zig-histogram"),
        (polyglot("as_quantiles"), "as-quantiles"),
        (polyglot("go_zscores"), "go-zscores"),
        (built("report"), "report"),
    ]
}

#[test]
fn every_example_passes_its_golden_files_through_plugin_test() {
    let env = Env::new();
    let root = sandflow_test_artifacts::repo_root();
    for (wasm, dir) in examples() {
        let cases = root.join("plugins").join(dir).join("tests");
        let out =
            env.run(&["plugin", "test", &cases.display().to_string(), "--plugin", &wasm.display().to_string()]).ok();
        assert!(out.contains(" case(s) passed"), "{dir}: {out}");
        assert!(!out.contains("FAIL"), "{dir}: {out}");
    }
}

#[test]
fn each_example_runs_once_through_plugin_run_with_a_context_file() {
    let env = Env::new();
    let root = sandflow_test_artifacts::repo_root();
    for (wasm, dir) in examples() {
        // A recorded case that must succeed, and the result it must give.
        let cases = root.join("plugins").join(dir).join("tests");
        let (context, expected) = std::fs::read_dir(&cases)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".context.json"))
            .map(|p| {
                let expected = PathBuf::from(p.to_string_lossy().replace(".context.json", ".expected.json"));
                let expected: Value = serde_json::from_slice(&std::fs::read(expected).unwrap()).unwrap();
                (p, expected)
            })
            .find(|(_, expected)| expected.get("error").is_none())
            .unwrap_or_else(|| panic!("{dir} has no recorded context that succeeds"));
        let run = env.run(&["plugin", "run", &wasm.display().to_string(), "--context", &context.display().to_string()]);
        let result: Value = serde_json::from_str(&run.ok()).unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert!(same(&result["output"], &expected["output"]), "{dir}: {result} is not {expected}");
        assert!(run.stderr().contains("sandflow: success ("), "{dir}: {}", run.stderr());
    }
}

#[test]
fn the_polyglot_dag_passes_data_through_seven_languages() {
    let env = Env::new();
    let dags = env.home().join("dags");
    std::fs::create_dir_all(dags.join("plugins")).unwrap();
    let root = sandflow_test_artifacts::repo_root();
    std::fs::copy(root.join("dags/polyglot.toml"), dags.join("polyglot.toml")).unwrap();
    for (wasm, _) in examples() {
        std::fs::copy(&wasm, dags.join("plugins").join(wasm.file_name().unwrap())).unwrap();
    }
    let dags = dags.display().to_string();
    let out = env.run(&["dags", "test", "polyglot", "--dags", &dags]).ok();
    for task in ["parse", "clean", "stats", "histogram", "quantiles", "zscores", "report"] {
        assert!(out.contains(&format!("] {task} success (try 1, ")), "{task} did not succeed:\n{out}");
    }
    // Through the scheduler and the store, as a deployment runs it.
    let out = env.run(&["standalone", "--dags", &dags, "--trigger", "polyglot", "--exit-when-done"]).ok();
    assert!(out.contains(" report: success"), "{out}");
    let listed: Value =
        serde_json::from_str(&env.run(&["tasks", "list", "polyglot", "latest", "--json"]).ok()).unwrap();
    let output = |task: &str| -> Value {
        let ti = listed["task_instances"].as_array().unwrap().iter().find(|t| t["task_id"] == task).unwrap();
        ti["output"].clone()
    };
    // Python read 10 numbers of the 12 rows (an empty cell and "n/a" skipped), JavaScript dropped
    // the 41.0 outlier, C, Zig, AssemblyScript and Go computed on the 9 left, Rust summed it up.
    assert_eq!(output("parse")["rows"], 12, "{}", output("parse"));
    assert_eq!(output("parse")["skipped"], 2, "{}", output("parse"));
    let removed: Vec<f64> = serde_json::from_value(output("clean")["removed"].clone()).unwrap();
    assert_eq!(removed, [41.0], "{}", output("clean"));
    assert_eq!(output("stats")["count"], 9, "{}", output("stats"));
    let bins =
        output("histogram")["bins"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>();
    assert_eq!(bins, 9, "{}", output("histogram"));
    assert_eq!(output("zscores")["z"].as_array().unwrap().len(), 9, "{}", output("zscores"));
    let report = output("report");
    assert_eq!(report["count"], 9, "{report}");
    let mean = output("stats")["mean"].as_f64().unwrap();
    assert!((report["mean"].as_f64().unwrap() - mean).abs() < 1e-12, "{report}");
    assert_eq!(report["p50"], output("quantiles")["p50"], "{report}");
    assert!(report["text"].as_str().unwrap().starts_with("9 values, mean "), "{report}");

    // The v2 tasks' host calls: levels in the log, metrics sent with host.metric stored.
    let log = env.run(&["tasks", "logs", "polyglot", "latest", "report"]).ok();
    assert!(log.contains(" INFO 9 values, mean "), "{log}");
    let metrics = |task: &str| -> Value {
        let ti = listed["task_instances"].as_array().unwrap().iter().find(|t| t["task_id"] == task).unwrap();
        ti["metrics"].clone()
    };
    // `outliers` is sent only with host.metric (not in report's result): stored all the same.
    assert_eq!(metrics("report")["outliers"], 0.0, "{}", metrics("report"));
    assert_eq!(metrics("parse")["rows"], 12.0, "{}", metrics("parse"));
}

/// JSON values equal with numbers compared as floats (`3` is `3.0`), as `plugin test` compares.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (x, y) => x == y,
    }
}

/// Runs a scaffolded project's `./build.sh` with the toolchains on PATH.
fn build(project: &Path) {
    let toolchains = sandflow_test_artifacts::repo_root().join("target/toolchains/bin");
    let path = format!("{}:{}", toolchains.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("./build.sh").current_dir(project).env("PATH", path).output().unwrap();
    assert!(
        out.status.success(),
        "{}: ./build.sh failed\nstdout:\n{}\nstderr:\n{}",
        project.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plugin_new_makes_a_project_that_builds_runs_and_passes_its_tests_in_every_language() {
    let env = Env::new();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().display().to_string();
    for lang in ["rust", "c", "zig", "as", "go", "python", "js"] {
        let name = format!("my-{lang}-op");
        let out = env.run(&["plugin", "new", "--lang", lang, &name, "--dir", &dir]).ok();
        assert!(out.contains("created "), "{out}");
        let project = parent.path().join(&name);
        build(&project);
        let wasm = project.join(format!("{name}.wasm")).display().to_string();
        let context = project.join("tests/basic.context.json").display().to_string();
        let result = env.run(&["plugin", "run", &wasm, "--context", &context]).ok();
        assert!(serde_json::from_str::<Value>(&result).is_ok(), "{lang}: {result}");
        let tests = project.join("tests").display().to_string();
        let out = env.run(&["plugin", "test", &tests]).ok();
        assert!(out.contains("case(s) passed"), "{lang}: {out}");
        // And with the empty context `plugin run` sends by default.
        env.run(&["plugin", "run", &wasm]).ok();
    }
    // A second project of the same name is refused, nothing overwritten.
    let again = env.run(&["plugin", "new", "--lang", "c", "my-c-op", "--dir", &dir]);
    assert_eq!(again.code(), 2, "{}", again.stderr());
    assert!(again.reason().contains("exists"), "{}", again.reason());
}

#[test]
fn plugin_test_reports_the_first_difference_and_fails() {
    let env = Env::new();
    let cases = tempfile::tempdir().unwrap();
    std::fs::write(cases.path().join("a.context.json"), r#"{"params": {"mode": "echo", "n": 1}}"#).unwrap();
    std::fs::write(cases.path().join("a.expected.json"), r#"{"output": {"task_id": "nope"}}"#).unwrap();
    let wasm = sandflow_test_artifacts::path("operator").display().to_string();
    let dir = cases.path().display().to_string();
    let run = env.run(&["plugin", "test", &dir, "--plugin", &wasm]);
    assert_eq!(run.code(), 1, "{}", run.stdout());
    assert!(run.stdout().contains("FAIL  a: output.task_id: expected \"nope\", got \"\""), "{}", run.stdout());
    assert!(run.reason().contains("1 of 1 case(s) failed: a"), "{}", run.reason());
    // --update writes what the plugin returned; then it passes.
    env.run(&["plugin", "test", &dir, "--plugin", &wasm, "--update"]).ok();
    assert!(env.run(&["plugin", "test", &dir, "--plugin", &wasm]).ok().contains("1 case(s) passed"));
    // An expected failure.
    std::fs::write(cases.path().join("b.context.json"), r#"{"params": {"mode": "error"}}"#).unwrap();
    std::fs::write(cases.path().join("b.expected.json"), r#"{"error": "refusing to work"}"#).unwrap();
    assert!(env.run(&["plugin", "test", &dir, "--plugin", &wasm]).ok().contains("2 case(s) passed"));
    // A case without its expected file is an error that says what to do.
    std::fs::write(cases.path().join("c.context.json"), "{}").unwrap();
    let run = env.run(&["plugin", "test", &dir, "--plugin", &wasm]);
    assert_eq!(run.code(), 2);
    assert!(run.reason().contains("--update writes them"), "{}", run.reason());
    // A recorded context that is not JSON: refused, naming the file.
    std::fs::write(cases.path().join("c.context.json"), "nope").unwrap();
    let run = env.run(&["plugin", "test", &dir, "--plugin", &wasm]);
    assert_eq!(run.code(), 2);
    assert!(run.reason().contains("c.context.json is not valid JSON"), "{}", run.reason());
}

#[test]
fn inspect_says_which_abi_a_plugin_speaks() {
    let env = Env::new();
    let v2 = env.run(&["plugin", "inspect", &sandflow_test_artifacts::path("operator").display().to_string()]).ok();
    assert!(v2.contains("kind:    sandflow:operator@2 operator (component, ABI v2)"), "{v2}");
    assert!(v2.contains("abi:     2"), "{v2}");
    let v1 = env.run(&["plugin", "inspect", &sandflow_test_artifacts::path("noop-p2").display().to_string()]).ok();
    assert!(v1.contains("abi:     1"), "{v1}");
    let id = env.run(&["plugin", "add", &sandflow_test_artifacts::path("operator").display().to_string()]).ok();
    let listed = env.run(&["plugin", "list"]).ok();
    assert!(listed.contains(id.trim()) && listed.contains("v2_operator"), "{listed}");
}

#[test]
fn adding_a_plugin_compiles_it_so_its_first_run_loads_compiled_code() {
    let env = Env::new();
    let wasm = sandflow_test_artifacts::polyglot_path("py_parse_csv").display().to_string();
    let id = env.run(&["plugin", "add", &wasm]).ok();
    let run = env.run(&["plugin", "run", id.trim(), "--input", r#"{"params": {"csv": "a\n1\n", "column": "a"}}"#]);
    assert!(run.stderr().contains("code from cache"), "the 18 MB component was compiled again:\n{}", run.stderr());
    let result: Value = serde_json::from_str(&run.ok()).unwrap();
    assert_eq!(result["output"]["values"], serde_json::json!([1.0]), "{result}");
}
