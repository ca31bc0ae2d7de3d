//! `sandflow plugin add|inspect|run|list`.

use serde_json::{json, Value};

use crate::{plugin, Env};

#[test]
fn add_prints_the_id_and_stores_the_plugin_once() {
    let env = Env::new();
    let id = env.run(&["plugin", "add", &plugin("echo")]).ok();
    let id = id.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(env.run(&["plugin", "add", &plugin("echo")]).ok().trim(), id);
    let listed: Value = serde_json::from_str(&env.run(&["plugin", "list", "--json"]).ok()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!((listed[0]["id"].as_str(), listed[0]["kind"].as_str()), (Some(id), Some("p1_command")));
    let table = env.run(&["plugin", "list"]).ok();
    assert!(table.starts_with("id ") && table.contains(id) && table.contains("p1_command"), "{table}");
    // A stored plugin runs by id.
    let out = env.run(&["plugin", "run", id, "--input", r#"{"params":{"k":"v"}}"#]).ok();
    let result: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(result["output"]["params"], json!({"k": "v"}));
}

#[test]
fn add_refuses_what_is_not_a_plugin() {
    let env = Env::new();
    let run = env.run(&["plugin", "add", "/etc/passwd"]);
    assert_eq!(run.code(), 2);
    assert_eq!(
        run.reason(),
        "error: /etc/passwd is not a plugin Sandflow can run: not a WebAssembly binary: it does not start with the wasm magic bytes \\0asm"
    );
    let run = env.run(&["plugin", "add", "/no/such/file.wasm"]);
    assert_eq!(run.code(), 2);
    assert_eq!(run.reason(), "error: no such file: /no/such/file.wasm");
    assert_eq!(env.run(&["plugin", "list", "--json"]).ok().trim(), "[]", "nothing was stored");
}

#[test]
fn inspect_shows_kind_imports_and_exports() {
    let env = Env::new();
    let out = env.run(&["plugin", "inspect", &plugin("noop")]).ok();
    assert!(out.contains("kind:    wasi preview1 command (core module)"), "{out}");
    assert!(out.contains("wasi_snapshot_preview1::fd_write (func)"), "{out}");
    assert!(out.contains("_start (func)"), "{out}");
    let out = env.run(&["plugin", "inspect", "--json", &plugin("noop-p2")]).ok();
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["kind"], "p2_command");
    assert!(info["exports"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().starts_with("wasi:cli/run@0.2")));
}

#[test]
fn every_example_plugin_runs() {
    let env = Env::new();
    let cases = [
        ("noop", json!({}), json!(null)),
        ("noop-p2", json!({}), json!(null)),
        ("echo", json!({"x": 1}), json!({"params": {"x": 1}, "inputs": {}})),
        ("echo-p2", json!({"x": 1}), json!({"params": {"x": 1}, "inputs": {}})),
        ("c-stats", json!({"values": [2, 4]}), json!({"count": 2, "mean": 3, "min": 2, "max": 4, "stddev": 1, "sum": 6})),
    ];
    for (stem, params, expected) in cases {
        let input = json!({ "params": params }).to_string();
        let out = env.run(&["plugin", "run", &plugin(stem), "--input", &input]).ok();
        let result: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(result.get("output").cloned().unwrap_or(Value::Null), expected, "{stem}");
    }
    for stem in ["logreg", "logreg-p2"] {
        let input = r#"{"params":{"synthetic":{"rows":200,"features":3,"seed":5}}}"#;
        let run = env.run(&["plugin", "run", &plugin(stem), "--input", input]);
        let result: Value = serde_json::from_str(&run.ok()).unwrap();
        assert_eq!(result["output"]["weights"].as_array().unwrap().len(), 3);
        assert!(run.stderr().contains("training on 200 rows"), "{}", run.stderr());
        assert!(run.reason().starts_with("sandflow: success (fuel "), "{}", run.reason());
    }
}

#[test]
fn failures_exit_1_with_a_reason_naming_the_limit() {
    let env = Env::new();
    let hostile = plugin("hostile");
    let run = env.run(&["plugin", "run", &hostile, "--input", r#"{"params":{"mode":"loop"}}"#, "--fuel", "1000000"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.reason().starts_with("sandflow: fuel exhausted after 1000000 units (plugin sha256:"),
        "{}",
        run.reason()
    );

    let run = env.run(&["plugin", "run", &hostile, "--input", r#"{"params":{"mode":"grow"}}"#, "--memory-mb", "32"]);
    assert_eq!(run.code(), 1);
    assert!(run.reason().starts_with("sandflow: memory limit of 32 MiB reached"), "{}", run.reason());

    let run = env.run(&[
        "plugin",
        "run",
        &hostile,
        "--input",
        r#"{"params":{"mode":"loop"}}"#,
        "--fuel",
        "900000000000",
        "--timeout",
        "0.3",
    ]);
    assert_eq!(run.code(), 1);
    assert!(run.reason().starts_with("sandflow: timed out after 300ms"), "{}", run.reason());

    let run = env.run(&["plugin", "run", &hostile, "--input", r#"{"params":{"mode":"exit","code":3}}"#]);
    assert_eq!(run.code(), 1);
    assert!(run.reason().starts_with("sandflow: exit code 3 "), "{}", run.reason());
    assert_eq!(run.stdout(), "", "no result on failure");
}

#[test]
fn bad_arguments_exit_2_with_a_clear_error() {
    let env = Env::new();
    let noop = plugin("noop");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--input", "{not json"],
            "error: --input is not valid JSON: key must be a string at line 1 column 2 (it starts \"{not json\")",
        ),
        (
            &["--input", "[1]"],
            r#"error: --input must be a JSON object ({"key": value, ...}), not a list (it starts "[1]")"#,
        ),
        (&["--timeout", "0"], "error: --timeout must be a positive number of seconds, not 0"),
        (&["--memory-mb", "999999"], "error: memory 999999 MiB is over the cap of 4096 MiB"),
        (&["--input", "@/no/such.json"], "error: --input @/no/such.json: No such file or directory (os error 2)"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["plugin", "run", noop.as_str()];
        all.extend_from_slice(args);
        let run = env.run(&all);
        assert_eq!(run.code(), 2, "{args:?}");
        assert_eq!(run.reason(), expected, "{args:?}");
    }
    let unknown = format!("sha256:{}", "0".repeat(64));
    let run = env.run(&["plugin", "run", &unknown]);
    assert_eq!(run.code(), 2);
    assert_eq!(
        run.reason(),
        format!("error: no plugin {unknown} in the store (add it with: sandflow plugin add FILE.wasm)")
    );
}

#[test]
fn a_second_process_loads_compiled_code_from_the_cache() {
    let env = Env::new();
    let logreg = plugin("logreg-p2");
    let input = r#"{"params":{"synthetic":{"rows":10,"features":2}}}"#;
    let first = env.run(&["plugin", "run", &logreg, "--input", input]);
    first.ok();
    assert!(first.reason().ends_with(", compiled now)"), "{}", first.reason());
    let cached: Vec<_> = walk(&env.home().join("cache/code"));
    assert_eq!(cached.len(), 1, "{cached:?}");
    let written = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();

    let second = env.run(&["plugin", "run", &logreg, "--input", input]);
    second.ok();
    assert!(second.reason().ends_with(", code from cache)"), "{}", second.reason());
    assert_eq!(std::fs::metadata(&cached[0]).unwrap().modified().unwrap(), written, "not rewritten");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
