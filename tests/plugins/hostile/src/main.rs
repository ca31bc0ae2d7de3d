//! A plugin that misbehaves on request (`params.mode`), so each sandbox limit has a test.
//! The "escape" modes report what the sandbox answered as their output, so a test can check that
//! the attempt was denied inside the plugin.

use std::io::{Read, Write};
use std::time::Duration;

use sandflow_sdk::{json, Context, TaskResult};

fn param_u64(ctx: &Context, name: &str, default: u64) -> u64 {
    ctx.params.get(name).and_then(|v| v.as_u64()).unwrap_or(default)
}

fn attempt<T: std::fmt::Debug, E: std::fmt::Display>(what: &str, result: Result<T, E>) -> TaskResult {
    let output = match result {
        Ok(value) => json!({ "attempt": what, "allowed": true, "detail": format!("{value:?}") }),
        Err(e) => json!({ "attempt": what, "allowed": false, "detail": e.to_string() }),
    };
    TaskResult::with_output(output)
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    // black_box keeps the compiler from turning this into a loop.
    std::hint::black_box(recurse(std::hint::black_box(depth + 1))) + 1
}

#[inline(never)]
fn deliberate_trap() -> ! {
    #[cfg(target_family = "wasm")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_family = "wasm"))]
    std::process::abort();
}

/// `stdin` is the task context as the host sent it, before the plugin parses it.
fn misbehave(ctx: Context, stdin: &str) -> Result<TaskResult, String> {
    let mode = ctx.params.get("mode").and_then(|v| v.as_str()).unwrap_or("").to_string();
    match mode.as_str() {
        "loop" => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "sleep" => {
            std::thread::sleep(Duration::from_millis(param_u64(&ctx, "ms", 100)));
            Ok(TaskResult::with_output(json!("slept")))
        }
        "read_file" => Ok(attempt("read /etc/passwd", std::fs::read_to_string("/etc/passwd"))),
        "list_root" => Ok(attempt("list /", std::fs::read_dir("/").map(|d| d.count()))),
        "env" => Ok(attempt(
            "read the environment",
            match std::env::vars().count() {
                0 => std::env::var("PATH").map_err(|e| format!("PATH: {e}; {} variables in all", 0)),
                n => Ok(format!("{n} variables")),
            },
        )),
        "socket" => {
            let port = param_u64(&ctx, "port", 80);
            Ok(attempt("connect to 127.0.0.1", std::net::TcpStream::connect(("127.0.0.1", port as u16))))
        }
        "stdout_flood" => {
            let chunk = vec![b'x'; 1 << 20];
            let mut out = std::io::stdout().lock();
            for _ in 0..param_u64(&ctx, "mib", 100) {
                out.write_all(&chunk).map_err(|e| format!("stdout: {e}"))?;
            }
            Ok(TaskResult::default())
        }
        "stderr_flood" => {
            let chunk = vec![b'e'; 1 << 20];
            let mut err = std::io::stderr().lock();
            for _ in 0..param_u64(&ctx, "mib", 100) {
                err.write_all(&chunk).map_err(|e| format!("stderr: {e}"))?;
            }
            Ok(TaskResult::with_output(json!("flooded")))
        }
        "recurse" => Ok(TaskResult::with_output(json!(recurse(0)))),
        "trap" => {
            eprintln!("about to trap");
            deliberate_trap()
        }
        "bad_json" => {
            print!("this is not json");
            std::io::stdout().flush().map_err(|e| e.to_string())?;
            std::process::exit(0)
        }
        "exit" => std::process::exit(param_u64(&ctx, "code", 3) as i32),
        // Prints the string params.text verbatim as the result: bytes no JSON library has touched.
        "raw" => {
            print!("{}", ctx.params.get("text").and_then(|v| v.as_str()).unwrap_or_default());
            std::io::stdout().flush().map_err(|e| e.to_string())?;
            std::process::exit(0)
        }
        // Returns the task context exactly as it arrived on stdin, as a string: what the host sent.
        "context" => Ok(TaskResult::with_output(json!(stdin))),
        // Prints params.result verbatim as the result: any result a test needs, valid or not.
        "result" => {
            let result = ctx.params.get("result").cloned().unwrap_or_default();
            print!("{result}");
            std::io::stdout().flush().map_err(|e| e.to_string())?;
            std::process::exit(0)
        }
        // A sensor that is done from poke (try) params.done_on_poke on.
        "poke" => {
            let done = u64::from(ctx.try_number) >= param_u64(&ctx, "done_on_poke", 3);
            eprintln!("poke {}: {}", ctx.try_number, if done { "done" } else { "not yet" });
            Ok(TaskResult { sensor: Some(sandflow_sdk::SensorResult { done }), ..TaskResult::default() })
        }
        // Writes `tick N` to its log params.count times (default 100), params.ms apart (default
        // 100): a try whose log lines arrive while it runs.
        "ticks" => {
            for n in 1..=param_u64(&ctx, "count", 100) {
                eprintln!("tick {n}");
                std::thread::sleep(Duration::from_millis(param_u64(&ctx, "ms", 100)));
            }
            Ok(TaskResult::with_output(json!("ticked")))
        }
        // Fails on tries before params.succeed_on_try, succeeds on it and after.
        "flaky" => {
            let succeed_on = param_u64(&ctx, "succeed_on_try", 2);
            if u64::from(ctx.try_number) < succeed_on {
                return Err(format!("flaky: try {} fails", ctx.try_number));
            }
            Ok(TaskResult::with_output(json!({ "succeeded_on_try": ctx.try_number })))
        }
        other => Err(format!("unknown mode `{other}`")),
    }
}

fn main() {
    let mut stdin = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut stdin) {
        eprintln!("error: reading stdin: {e}");
        std::process::exit(sandflow_sdk::EXIT_BAD_CONTEXT);
    }
    let ended = sandflow_sdk::run_with(stdin.as_bytes(), std::io::stdout().lock(), |ctx| misbehave(ctx, &stdin));
    match ended {
        Ok(()) => std::process::exit(0),
        Err(failure) => {
            eprintln!("{failure}");
            std::process::exit(failure.exit_code())
        }
    }
}
