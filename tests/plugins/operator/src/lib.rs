//! An ABI v2 operator for the host's tests, doing what `params.mode` asks:
//! - `echo` (default): logs at every level, reports progress, sends a metric, returns its context;
//! - `error`: returns a task error; `trap`: traps; `spin`: loops until the fuel runs out;
//! - `grow`: allocates until the memory limit; `slow`: reports progress for `params.seconds`;
//! - `big`: returns an output of `params.bytes` bytes.

use std::time::{Duration, Instant};

use sandflow_sdk::{json, v2, Context, TaskResult, Value};

fn operate(ctx: Context) -> Result<TaskResult, String> {
    let mode = ctx.params.get("mode").and_then(Value::as_str).unwrap_or("echo").to_string();
    match mode.as_str() {
        "echo" => {
            v2::log::debug("a debug line");
            v2::log::info("an info line");
            v2::log::warn("a warning");
            v2::log::error("an error line");
            println!("printed on stdout");
            v2::progress(0.5, "half way");
            v2::metric("sent", 7.0);
            v2::metric("both", 1.0);
            let output = json!({
                "task_id": ctx.task_id,
                "try_number": ctx.try_number,
                "map_index": ctx.map_index,
                "map_item": ctx.map_item,
                "params": ctx.params,
                "inputs": ctx.inputs,
            });
            Ok(TaskResult::with_output(output).metric("both", 2.0))
        }
        "error" => Err(format!("refusing to work on try {}", ctx.try_number)),
        "trap" => {
            #[cfg(target_family = "wasm")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_family = "wasm"))]
            unreachable!()
        }
        "spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "grow" => {
            let mut chunks = Vec::new();
            loop {
                chunks.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&chunks);
            }
        }
        "slow" => {
            let seconds = ctx.params.get("seconds").and_then(Value::as_f64).unwrap_or(3.0);
            let start = Instant::now();
            let total = Duration::from_secs_f64(seconds);
            while start.elapsed() < total {
                let done = start.elapsed().as_secs_f64() / seconds;
                v2::progress(done as f32, &format!("{:.0}% through", done * 100.0));
                std::thread::sleep(Duration::from_millis(100));
            }
            v2::progress(1.0, "done");
            Ok(TaskResult::with_output("slept"))
        }
        "big" => {
            let bytes = ctx.params.get("bytes").and_then(Value::as_u64).unwrap_or(2 << 20) as usize;
            Ok(TaskResult::with_output("x".repeat(bytes)))
        }
        other => Err(format!("unknown mode `{other}`")),
    }
}

sandflow_sdk::operator!(operate);
