//! The sandbox's integration tests: real plugins built from source, a real engine, real limits.
//! One binary for the whole area (link time on two cores).

mod authoring;
mod egress;
mod grants;
mod hostile;
mod loading;
mod operator;
mod running;

use std::sync::OnceLock;
use std::time::Duration;

use sandflow_sandbox::{KillSwitch, Limits, Sandbox, SandboxConfig, TryReport};
use serde_json::{json, Value};

/// One sandbox for the tests that do not need their own: engines are costly, plugins cached.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX
        .get_or_init(|| Sandbox::new(SandboxConfig { max_concurrent_tries: 256, ..SandboxConfig::default() }).unwrap())
}

/// The task context for `params`.
pub fn context(params: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "abi": 1, "dag_id": "test", "task_id": "t", "params": params })).unwrap()
}

/// Runs a built plugin (by file stem) with `params` under `limits`.
pub async fn run(stem: &str, params: Value, limits: &Limits) -> TryReport {
    run_bytes(&sandflow_test_artifacts::bytes(stem), params, limits).await
}

/// Runs plugin bytes with `params` under `limits`.
pub async fn run_bytes(bytes: &[u8], params: Value, limits: &Limits) -> TryReport {
    let plugin = sandbox().load(bytes).unwrap();
    sandbox().run(&plugin, &context(params), limits, &KillSwitch::new()).await
}

/// Limits for tests that should end fast when something goes wrong.
pub fn quick() -> Limits {
    Limits { timeout: Duration::from_secs(20), ..Limits::default() }
}

/// The output of a successful try; panics with the report otherwise.
pub fn output(report: &TryReport) -> &Value {
    match &report.outcome {
        sandflow_sandbox::Outcome::Success { result } => &result.output,
        other => panic!("expected success, got {other}\nlog:\n{}", report.log),
    }
}

/// A core module that writes `text` to stdout with `fd_write`: two texts, two plugin versions.
pub fn constant_plugin(text: &str) -> Vec<u8> {
    let len = text.len();
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "{text}")
            (func (export "_start")
                (i32.store (i32.const 0) (i32.const 16))
                (i32.store (i32.const 4) (i32.const {len}))
                (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        text = text.replace('"', "\\\""),
    ))
    .unwrap()
}
