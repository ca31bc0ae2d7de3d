//! What plugin authors in other languages trip over: exit statuses of 126 and more (AssemblyScript's
//! `abort` exits 255), and an initial memory that is over the limit before the plugin starts (Zig's
//! 16 MiB stack lives in it).

use sandflow_sandbox::{Limits, Outcome};
use serde_json::json;

use crate::{output, quick, run, run_bytes, sandbox};

#[tokio::test]
async fn every_exit_status_is_the_plugins_own_exit_code() {
    let report = run("hostile", json!({"mode": "exit", "code": 0}), &quick()).await;
    assert_eq!(output(&report), &json!(null), "exit 0 with empty stdout is success");
    for code in [1, 125, 126, 200, 255] {
        let report = run("hostile", json!({"mode": "exit", "code": code}), &quick()).await;
        assert_eq!(report.outcome, Outcome::ExitCode { code }, "{}", report.log);
        assert_eq!(report.outcome.to_string(), format!("exit code {code}"));
    }
}

/// A core module that calls `proc_exit(status)` at once.
fn proc_exit_plugin(status: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") (call $proc_exit (i32.const {status}))))"#
    ))
    .unwrap()
}

#[tokio::test]
async fn statuses_past_a_byte_are_exit_codes_too() {
    let report = run_bytes(&proc_exit_plugin(4096), json!({}), &quick()).await;
    assert_eq!(report.outcome, Outcome::ExitCode { code: 4096 });
    let report = run_bytes(&proc_exit_plugin(0), json!({}), &quick()).await;
    assert!(report.outcome.is_success(), "{}", report.outcome);
}

/// A command that does nothing, with an initial memory of `pages` pages of 64 KiB.
fn big_memory_plugin(pages: u32) -> Vec<u8> {
    wat::parse_str(format!(r#"(module (memory (export "memory") {pages}) (func (export "_start")))"#)).unwrap()
}

#[test]
fn a_plugin_says_how_much_memory_it_starts_with() {
    let info = sandbox().check(&big_memory_plugin(320)).unwrap();
    assert_eq!(info.initial_memory_bytes, 20 << 20);
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["initial_memory_bytes"], json!(20 << 20));
    for stem in ["hostile", "hostile-p2"] {
        let info = sandbox().check(&sandflow_test_artifacts::bytes(stem)).unwrap();
        assert!(info.initial_memory_bytes >= 64 << 10, "{stem}: {}", info.initial_memory_bytes);
        assert!(info.initial_memory_bytes < 16 << 20, "{stem}: {}", info.initial_memory_bytes);
    }
}

#[tokio::test]
async fn an_initial_memory_over_the_limit_says_what_it_needs() {
    let bytes = big_memory_plugin(320);
    let report = run_bytes(&bytes, json!({}), &Limits { memory_bytes: 16 << 20, ..quick() }).await;
    assert_eq!(report.outcome, Outcome::MemoryLimit { limit_bytes: 16 << 20, needed_at_start: Some(20 << 20) });
    assert_eq!(report.outcome.name(), "memory_limit", "the outcome's name stays");
    assert_eq!(report.outcome.to_string(), "this plugin needs 20 MiB at start; the limit is 16 MiB");
    assert_eq!(report.peak_memory_bytes, 0);

    let report = run_bytes(&bytes, json!({}), &Limits { memory_bytes: 20 << 20, ..quick() }).await;
    assert!(report.outcome.is_success(), "exactly the limit is enough: {}", report.outcome);
    assert_eq!(report.peak_memory_bytes, 20 << 20);
}

#[tokio::test]
async fn a_component_whose_memory_is_over_the_limit_at_start_says_so() {
    let report =
        run("hostile-p2", json!({"mode": "exit", "code": 0}), &Limits { memory_bytes: 1 << 16, ..quick() }).await;
    let Outcome::MemoryLimit { limit_bytes, needed_at_start: Some(needed) } = report.outcome else {
        panic!("{}", report.outcome)
    };
    assert_eq!(limit_bytes, 1 << 16);
    assert!(needed > 1 << 16, "{needed}");
}

/// A component of the `wasi:cli/command` world whose `run` calls `wasi:cli/exit.exit-with-code(code)`.
fn exit_with_code_component(code: u8) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            (import "wasi:cli/exit@0.2.12" (instance $exit
                (export "exit-with-code" (func (param "status-code" u8)))))
            (core func $exit_with_code (canon lower (func $exit "exit-with-code")))
            (core module $main
                (import "host" "exit-with-code" (func $exit_with_code (param i32)))
                (func (export "run") (result i32) (call $exit_with_code (i32.const {code})) (i32.const 0)))
            (core instance $host (export "exit-with-code" (func $exit_with_code)))
            (core instance $main (instantiate $main (with "host" (instance $host))))
            (func $run (result (result)) (canon lift (core func $main "run")))
            (instance $run_instance (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $run_instance)))"#
    ))
    .unwrap()
}

#[tokio::test]
async fn a_component_that_exits_with_a_code_keeps_it() {
    for code in [1u8, 125, 126, 200, 255] {
        let report = run_bytes(&exit_with_code_component(code), json!({}), &quick()).await;
        assert_eq!(report.outcome, Outcome::ExitCode { code: i32::from(code) }, "{}", report.log);
    }
    let report = run_bytes(&exit_with_code_component(0), json!({}), &quick()).await;
    assert!(report.outcome.is_success(), "{}", report.outcome);
}
