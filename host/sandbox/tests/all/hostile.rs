//! Hostile plugins: each misbehaviour ends as its own outcome, and the host is unharmed.

use std::time::{Duration, Instant};

use sandflow_sandbox::{Limits, Outcome};
use serde_json::json;

use crate::{output, quick, run, run_bytes};

#[tokio::test]
async fn an_infinite_loop_runs_out_of_fuel_quickly() {
    let limits = Limits { fuel: 1_000_000, ..quick() };
    for stem in ["hostile", "hostile-p2"] {
        let report = run(stem, json!({"mode": "loop"}), &limits).await;
        assert_eq!(report.outcome, Outcome::FuelExhausted { limit: 1_000_000 }, "{stem}");
        assert_eq!(report.outcome.to_string(), "fuel exhausted after 1000000 units");
        // Stopped by its fuel, not by the clock (no timing here: CI machines are shared and noisy).
        assert_eq!(report.fuel_used, 1_000_000);
    }
}

#[tokio::test]
async fn a_bare_wat_loop_with_default_fuel_stops() {
    let bytes = wat::parse_str(r#"(module (func (export "_start") (loop (br 0))))"#).unwrap();
    let report = run_bytes(&bytes, json!({}), &Limits { fuel: 50_000_000, ..quick() }).await;
    assert_eq!(report.outcome, Outcome::FuelExhausted { limit: 50_000_000 });
}

#[tokio::test]
async fn growing_memory_hits_the_memory_limit() {
    let limits = Limits { memory_bytes: 64 << 20, ..quick() };
    for stem in ["hostile", "hostile-p2"] {
        let report = run(stem, json!({"mode": "grow"}), &limits).await;
        assert_eq!(
            report.outcome,
            Outcome::MemoryLimit { limit_bytes: 64 << 20, needed_at_start: None },
            "{stem}: {}",
            report.log
        );
        assert_eq!(report.outcome.to_string(), "memory limit of 64 MiB reached");
        assert!(report.peak_memory_bytes <= 64 << 20, "{stem}: peak {}", report.peak_memory_bytes);
        assert!(report.peak_memory_bytes > 32 << 20, "{stem}: peak {}", report.peak_memory_bytes);
    }
}

#[tokio::test]
async fn memory_grow_in_a_wat_loop_hits_the_memory_limit() {
    let bytes = wat::parse_str(
        r#"(module (memory 1)
            (func (export "_start")
                (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
                unreachable))"#,
    )
    .unwrap();
    let report = run_bytes(&bytes, json!({}), &Limits { memory_bytes: 16 << 20, ..quick() }).await;
    assert_eq!(report.outcome, Outcome::MemoryLimit { limit_bytes: 16 << 20, needed_at_start: None });
}

#[tokio::test]
async fn spinning_with_plenty_of_fuel_times_out() {
    let limits = Limits { fuel: u64::MAX / 2, timeout: Duration::from_millis(300), ..Limits::default() };
    let started = Instant::now();
    let report = run("hostile", json!({"mode": "loop"}), &limits).await;
    assert_eq!(report.outcome, Outcome::Timeout { limit: Duration::from_millis(300) });
    assert_eq!(report.outcome.to_string(), "timed out after 300ms");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

/// Runs an escape attempt and returns what the plugin saw.
async fn attempt(stem: &str, mode: &str) -> (bool, String) {
    let report = run(stem, json!({"mode": mode, "port": 9}), &quick()).await;
    let out = output(&report);
    (out["allowed"].as_bool().unwrap(), out["detail"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn files_environment_and_sockets_are_denied_inside_the_plugin() {
    std::env::set_var("SANDFLOW_SECRET_FOR_TEST", "leak");
    for stem in ["hostile", "hostile-p2"] {
        for mode in ["read_file", "list_root", "env", "socket"] {
            let (allowed, detail) = attempt(stem, mode).await;
            assert!(!allowed, "{stem} {mode} was allowed: {detail}");
            assert!(!detail.contains("root:"), "{stem} {mode}: {detail}");
        }
    }
}

#[tokio::test]
async fn a_flood_on_stdout_is_output_too_large() {
    for stem in ["hostile", "hostile-p2"] {
        let report = run(stem, json!({"mode": "stdout_flood", "mib": 100}), &quick()).await;
        assert_eq!(report.outcome, Outcome::OutputTooLarge { limit_bytes: 1 << 20 }, "{stem}: {}", report.log);
        assert_eq!(report.outcome.to_string(), "output too large: more than 1 MiB on stdout");
    }
}

#[tokio::test]
async fn a_flood_on_stderr_is_truncated_with_a_marker() {
    for stem in ["hostile", "hostile-p2"] {
        let report = run(stem, json!({"mode": "stderr_flood", "mib": 100}), &quick()).await;
        assert_eq!(output(&report), &json!("flooded"), "{stem}");
        assert!(report.log.len() < (8 << 20) + 200, "{stem}: log of {} bytes", report.log.len());
        let last = report.log.lines().last().unwrap();
        let dropped: u64 = last
            .split_once("Z [sandflow] log truncated: ")
            .and_then(|(_, rest)| rest.strip_suffix(" more bytes dropped past the limit of 8 MiB"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{stem}: no marker: {last}"));
        // 100 MiB written, 8 MiB kept (timestamps included): about 92 MiB dropped.
        assert!(dropped > (92 << 20) - 4096 && dropped < (92 << 20) + 4096, "{stem}: {dropped}");
    }
}

#[tokio::test]
async fn unbounded_recursion_is_a_stack_overflow_trap() {
    let report = run("hostile", json!({"mode": "recurse"}), &quick()).await;
    let Outcome::Trap { message, .. } = &report.outcome else { panic!("{report}") };
    assert_eq!(message, "stack overflow: the wasm call stack is exhausted");
}

#[tokio::test]
async fn a_trap_leaves_a_wasm_backtrace_in_the_log() {
    let report = run("hostile", json!({"mode": "trap"}), &quick()).await;
    let Outcome::Trap { message, backtrace } = &report.outcome else { panic!("{report}") };
    assert!(message.contains("unreachable"), "{message}");
    assert!(backtrace.as_deref().unwrap_or("").contains("deliberate_trap"), "{backtrace:?}");
    let first = report.log.lines().next().unwrap();
    assert!(first.ends_with("Z about to trap"), "every line is timestamped: {}", report.log);
    assert!(
        report.log.contains("Z [sandflow] trap: wasm trap: wasm `unreachable` instruction executed\n"),
        "{}",
        report.log
    );
    assert!(report.log.contains("Z [sandflow] wasm backtrace:\n"), "{}", report.log);
}

#[tokio::test]
async fn invalid_result_json_is_its_own_outcome() {
    let report = run("hostile", json!({"mode": "bad_json"}), &quick()).await;
    let Outcome::InvalidResult { reason } = &report.outcome else { panic!("{report}") };
    assert_eq!(reason, "expected ident at line 1 column 2");
    assert_eq!(report.outcome.to_string(), "invalid result JSON: expected ident at line 1 column 2");
}

#[tokio::test]
async fn unknown_result_fields_are_an_invalid_result() {
    let bytes = crate::constant_plugin(r#"{"outptu": 1}"#);
    let report = run_bytes(&bytes, json!({}), &quick()).await;
    assert_eq!(
        report.outcome,
        Outcome::InvalidResult {
            reason: "unknown field `outptu`, expected one of `output`, `metrics`, `branch`, `sensor`, `trigger` at line 1 column 9"
                .into()
        }
    );
}

#[tokio::test]
async fn exit_codes_are_reported() {
    let report = run("hostile", json!({"mode": "exit", "code": 3}), &quick()).await;
    assert_eq!(report.outcome, Outcome::ExitCode { code: 3 });
    // wasi:cli/run 0.2 has no exit codes: a component's failure reads as 1.
    let report = run("hostile-p2", json!({"mode": "exit", "code": 3}), &quick()).await;
    assert_eq!(report.outcome, Outcome::ExitCode { code: 1 });
    let report = run("hostile", json!({"mode": "no such mode"}), &quick()).await;
    assert_eq!(report.outcome, Outcome::ExitCode { code: 1 });
    assert!(report.log.contains("error: unknown mode `no such mode`"), "{}", report.log);
}
