//! Plugins by language: for each example of the polyglot DAG, its size, the compile time of its
//! first load (what `plugin add` pays once), the load of its compiled code from the disk cache (what
//! every later process pays), and instantiate + run p50/p90 with its recorded context (golden file).
//! Prints a Markdown table for BENCHMARKS.md; asserts nothing about time.
//!
//!     scripts/install-toolchains.sh && plugins/build-polyglot.sh target/polyglot
//!     cargo bench -p sandflow-sandbox --bench languages [-- --runs N]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandflow_sandbox::{KillSwitch, Limits, Sandbox, SandboxConfig};

fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.0} KB", bytes as f64 / 1024.0)
    }
}

/// The first `.context.json` of an example's recorded cases, by name, that is expected to succeed.
fn recorded_context(example: &str) -> Vec<u8> {
    let dir = sandflow_test_artifacts::repo_root().join("plugins").join(example).join("tests");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".context.json"))
        .filter(|p| {
            let expected = p.to_string_lossy().replace(".context.json", ".expected.json");
            let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(expected).unwrap()).unwrap();
            expected.get("error").is_none()
        })
        .collect();
    cases.sort();
    let mut context: serde_json::Value = serde_json::from_slice(&std::fs::read(&cases[0]).unwrap()).unwrap();
    context["abi"] = 1.into();
    serde_json::to_vec(&context).unwrap()
}

fn main() {
    std::env::remove_var("RUST_BACKTRACE");
    let runs: usize = std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|n| n.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let examples = [
        ("Python (componentize-py)", "v2", sandflow_test_artifacts::polyglot_path("py_parse_csv"), "py-parse-csv"),
        ("JavaScript (componentize-qjs)", "v2", sandflow_test_artifacts::polyglot_path("js_clean"), "js-clean"),
        ("C (clang, wasi-libc)", "v1", sandflow_test_artifacts::path("c-stats"), "c-stats"),
        ("Zig", "v1", sandflow_test_artifacts::polyglot_path("zig_histogram"), "zig-histogram"),
        ("AssemblyScript", "v1", sandflow_test_artifacts::polyglot_path("as_quantiles"), "as-quantiles"),
        ("Go (wasip1)", "v1", sandflow_test_artifacts::polyglot_path("go_zscores"), "go-zscores"),
        ("Rust (wasip2, sandflow-sdk v2)", "v2", sandflow_test_artifacts::path("report"), "report"),
    ];
    println!("| language | ABI | size | compile (first add) | load from cache | instantiate + run p50 | p90 | fuel per run |");
    println!("|---|---|---|---|---|---|---|---|");
    for (language, abi, path, example) in examples {
        let bytes = std::fs::read(&path).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let config = || SandboxConfig { cache_dir: Some(cache.path().to_path_buf()), ..SandboxConfig::default() };
        let cold = Sandbox::new(config()).unwrap();
        let started = Instant::now();
        cold.load(&bytes).unwrap();
        let compile = started.elapsed();
        drop(cold);
        // A new sandbox (a new process, as far as the caches go): the code comes from the disk.
        let warm = Sandbox::new(config()).unwrap();
        let started = Instant::now();
        let plugin = warm.load(&bytes).unwrap();
        let load = started.elapsed();
        let context = recorded_context(example);
        let limits = Limits::default();
        let mut times = Vec::with_capacity(runs);
        let mut fuel = 0;
        rt.block_on(async {
            for _ in 0..runs {
                let started = Instant::now();
                let report = warm.run(&plugin, &context, &limits, &KillSwitch::new()).await;
                times.push(started.elapsed());
                assert!(report.outcome.is_success(), "{example}: {}\n{}", report.outcome, report.log);
                fuel = report.fuel_used;
            }
        });
        times.sort();
        let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {language} | {abi} | {} | {} | {} | {} | {} | {fuel} |",
            size(bytes.len()),
            ms(compile),
            ms(load),
            ms(p(0.5)),
            ms(p(0.9))
        );
    }
}
