//! ABI v2: components of the `sandflow:operator` world, run through the same sandbox as commands.
//! The test operator (tests/plugins/operator) does what `params.mode` asks.

use std::time::Duration;

use sandflow_sandbox::{KillSwitch, Limits, LiveLog, Outcome, PluginError, PluginKind};
use serde_json::json;

use crate::{context, output, quick, run, sandbox};

#[test]
fn an_operator_is_told_apart_from_a_command() {
    let info = sandbox().check(&sandflow_test_artifacts::bytes("operator")).unwrap();
    assert_eq!(info.kind, PluginKind::V2Operator);
    assert_eq!(info.kind.abi(), 2);
    assert!(info.exports.iter().any(|e| e == "run"), "{:?}", info.exports);
    assert!(info.imports.iter().any(|i| i == "sandflow:operator/host@2.0.0"), "{:?}", info.imports);
    assert_eq!(sandbox().check(&sandflow_test_artifacts::bytes("noop-p2")).unwrap().kind.abi(), 1);
}

#[tokio::test]
async fn run_gets_the_typed_context_and_the_host_gets_logs_progress_and_metrics() {
    let report = run("operator", json!({"mode": "echo", "n": [1, 2]}), &quick()).await;
    let out = output(&report);
    assert_eq!(out["task_id"], "t");
    assert_eq!(out["try_number"], 1);
    assert_eq!(out["params"]["n"], json!([1, 2]));
    let Outcome::Success { result } = &report.outcome else { unreachable!() };
    // Sent with host.metric, merged under the result's own (which win on "both").
    assert_eq!(result.metrics.get("sent"), Some(&7.0));
    assert_eq!(result.metrics.get("both"), Some(&2.0));
    for line in
        ["DEBUG a debug line", "INFO an info line", "WARN a warning", "ERROR an error line", "printed on stdout"]
    {
        assert!(report.log.lines().any(|l| l.ends_with(line)), "no {line:?} in the log:\n{}", report.log);
    }
    let progress = report.progress.expect("the operator reported progress");
    assert_eq!((progress.fraction, progress.message.as_str()), (0.5, "half way"));
}

#[tokio::test]
async fn a_returned_error_is_a_task_error_with_its_message() {
    let report = run("operator", json!({"mode": "error"}), &quick()).await;
    assert_eq!(report.outcome, Outcome::TaskError { message: "refusing to work on try 1".into() });
    assert_eq!(report.outcome.name(), "task_error");
    assert_eq!(report.outcome.to_string(), "the task failed: refusing to work on try 1");
    assert!(report.log.contains("[sandflow] the task failed: refusing to work on try 1"), "{}", report.log);
}

#[tokio::test]
async fn traps_fuel_memory_and_output_limits_end_a_v2_try_as_they_end_a_v1_try() {
    let report = run("operator", json!({"mode": "trap"}), &quick()).await;
    assert!(matches!(report.outcome, Outcome::Trap { .. }), "{}", report.outcome);

    let limits = Limits { fuel: 50_000_000, ..quick() };
    let report = run("operator", json!({"mode": "spin"}), &limits).await;
    assert_eq!(report.outcome, Outcome::FuelExhausted { limit: 50_000_000 });

    let limits = Limits { memory_bytes: 32 << 20, ..quick() };
    let report = run("operator", json!({"mode": "grow"}), &limits).await;
    assert!(
        matches!(report.outcome, Outcome::MemoryLimit { limit_bytes, .. } if limit_bytes == 32 << 20),
        "{}",
        report.outcome
    );

    let limits = Limits { max_output_bytes: 1 << 20, ..quick() };
    let report = run("operator", json!({"mode": "big", "bytes": 2 << 20}), &limits).await;
    assert_eq!(report.outcome, Outcome::OutputTooLarge { limit_bytes: 1 << 20 });
    let report = run("operator", json!({"mode": "big", "bytes": 1000}), &limits).await;
    assert_eq!(output(&report).as_str().map(str::len), Some(1000));
}

#[tokio::test]
async fn progress_is_readable_while_the_try_runs_and_a_kill_stops_it() {
    let plugin = sandbox().load(&sandflow_test_artifacts::bytes("operator")).unwrap();
    let (kill, live) = (KillSwitch::new(), LiveLog::new());
    let input = context(json!({"mode": "slow", "seconds": 30}));
    let limits = Limits { timeout: Duration::from_secs(60), ..Limits::default() };
    let watcher = async {
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(p) = live.progress().filter(|p| p.fraction > 0.0) {
                kill.kill();
                return p;
            }
        }
        panic!("no progress within 10 s")
    };
    let (report, seen) = tokio::join!(sandbox().run_live(&plugin, &input, &limits, &kill, &live), watcher);
    assert!(seen.message.ends_with("% through"), "{seen:?}");
    assert_eq!(report.outcome, Outcome::Killed);

    let limits = Limits { timeout: Duration::from_millis(300), ..Limits::default() };
    let report = run("operator", json!({"mode": "slow", "seconds": 30}), &limits).await;
    assert!(matches!(report.outcome, Outcome::Timeout { .. }), "{}", report.outcome);
}

#[test]
fn an_interface_the_host_does_not_provide_is_refused_by_name() {
    let bytes = wat::parse_str(
        r#"(component (import "sandflow:operator/secrets@2.0.0" (instance (export "get" (func (param "name" string) (result string))))))"#,
    )
    .unwrap();
    let err = sandbox().check(&bytes).unwrap_err();
    assert!(matches!(err, PluginError::UnknownImport(_)), "{err}");
    assert!(err.to_string().contains("sandflow:operator/secrets@2.0.0"), "{err}");
}

#[test]
fn a_run_export_of_another_type_is_not_an_operator() {
    let bytes = wat::parse_str(
        r#"(component
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func (export "run") (result u32) (canon lift (core func $i "run"))))"#,
    )
    .unwrap();
    let err = sandbox().check(&bytes).unwrap_err();
    assert!(matches!(err, PluginError::UnsupportedKind(_)), "{err}");
    assert!(err.to_string().contains("is not a sandflow:operator/operator@2.0.0 operator"), "{err}");
}

#[tokio::test]
async fn a_malformed_context_is_a_host_error_not_the_plugins() {
    let plugin = sandbox().load(&sandflow_test_artifacts::bytes("operator")).unwrap();
    let report = sandbox().run(&plugin, br#"{"abi":1,"params":[1]}"#, &quick(), &KillSwitch::new()).await;
    assert!(
        matches!(&report.outcome, Outcome::HostError { message } if message.contains("`params` is not an object")),
        "{}",
        report.outcome
    );
}
