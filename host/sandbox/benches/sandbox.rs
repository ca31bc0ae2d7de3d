//! Sandbox figures: compile, cached load, instantiate+run of `noop`, and a CPU-bound plugin with
//! fuel on, fuel off and natively. Prints figures; asserts nothing about time.
//!
//!     cargo bench -p sandflow-sandbox --bench sandbox [-- --runs N]

use std::time::{Duration, Instant};

use sandflow_sandbox::{KillSwitch, Limits, Sandbox, SandboxConfig};
use serde_json::json;

fn context(params: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"abi": 1, "task_id": "bench", "params": params})).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // Every guest error would capture a host backtrace: slow and beside the point here.
    std::env::remove_var("RUST_BACKTRACE");
    let runs: usize =
        std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    println!("## Compile (cold, no cache) and load of precompiled code");
    println!("| plugin | size | compile | load from disk cache |");
    println!("|---|---|---|---|");
    let cache = tempfile::tempdir().unwrap();
    let cached = SandboxConfig { cache_dir: Some(cache.path().to_path_buf()), ..SandboxConfig::default() };
    for stem in ["noop", "noop-p2", "echo", "echo-p2", "logreg", "logreg-p2", "c-stats"] {
        let bytes = sandflow_test_artifacts::bytes(stem);
        let sandbox = Sandbox::new(cached.clone()).unwrap();
        let t = Instant::now();
        sandbox.load(&bytes).unwrap();
        let compile = t.elapsed();
        let loads = (0..5)
            .map(|_| {
                let fresh = Sandbox::new(cached.clone()).unwrap();
                let t = Instant::now();
                fresh.load(&bytes).unwrap();
                t.elapsed()
            })
            .collect();
        println!("| {stem} | {} KB | {} | {} |", bytes.len() / 1000, ms(compile), ms(median(loads)));
    }

    println!("\n## Instantiate + run of noop, module cached ({runs} runs, one at a time)");
    println!("| allocator | plugin | p50 | p99 | mean |");
    println!("|---|---|---|---|---|");
    for pooling in [true, false] {
        let sandbox = Sandbox::new(SandboxConfig { pooling, ..SandboxConfig::default() }).unwrap();
        for stem in ["noop", "noop-p2"] {
            let plugin = sandbox.load(&sandflow_test_artifacts::bytes(stem)).unwrap();
            let input = context(json!({}));
            let limits = Limits::default();
            let kill = KillSwitch::new();
            let mut times = rt.block_on(async {
                for _ in 0..100 {
                    sandbox.run(&plugin, &input, &limits, &kill).await;
                }
                let mut times = Vec::with_capacity(runs);
                for _ in 0..runs {
                    let t = Instant::now();
                    let report = sandbox.run(&plugin, &input, &limits, &kill).await;
                    times.push(t.elapsed());
                    assert!(report.outcome.is_success(), "{report}");
                }
                times
            });
            let mean = times.iter().sum::<Duration>() / times.len() as u32;
            times.sort();
            let name = if pooling { "pooling" } else { "on-demand" };
            println!(
                "| {name} | {stem} | {} | {} | {} |",
                us(percentile(&times, 0.5)),
                us(percentile(&times, 0.99)),
                us(mean)
            );
        }
    }

    println!("\n## CPU-bound: logreg, 2000 rows × 8 features, 100 epochs (median of 5)");
    println!("| where | time | vs native | fuel used |");
    println!("|---|---|---|---|");
    let params = json!({"synthetic": {"rows": 2000, "features": 8, "seed": 1}, "hyper": {"epochs": 100}});
    let native = median(
        (0..5)
            .map(|_| {
                let ctx = serde_json::from_slice(&context(params.clone())).unwrap();
                let t = Instant::now();
                std::hint::black_box(logreg::handle(ctx).unwrap());
                t.elapsed()
            })
            .collect(),
    );
    println!("| native (same Rust code) | {} | 1.00× | - |", ms(native));
    for fuel_metering in [true, false] {
        let sandbox = Sandbox::new(SandboxConfig { fuel_metering, ..SandboxConfig::default() }).unwrap();
        let plugin = sandbox.load(&sandflow_test_artifacts::bytes("logreg")).unwrap();
        let input = context(params.clone());
        let limits = Limits { fuel: 1_000_000_000_000, ..Limits::default() };
        let mut fuel = 0;
        let time = median(rt.block_on(async {
            let mut times = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                let report = sandbox.run(&plugin, &input, &limits, &KillSwitch::new()).await;
                times.push(t.elapsed());
                assert!(report.outcome.is_success(), "{report}");
                fuel = report.fuel_used;
            }
            times
        }));
        let name = if fuel_metering { "wasm, fuel on" } else { "wasm, fuel off" };
        let ratio = time.as_secs_f64() / native.as_secs_f64();
        let fuel = if fuel_metering { fuel.to_string() } else { "-".into() };
        println!("| {name} | {} | {ratio:.2}× | {fuel} |", ms(time));
    }
}
