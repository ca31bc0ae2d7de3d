//! A plugin that uses what a try was granted, as `params.mode` asks, so each grant has a test:
//! - `write`: writes `params.bytes` bytes (default 1 MiB) to `/out/<params.name>` in 1 MiB chunks;
//! - `tree`: writes `params.files` (an object of relative path -> text) under `/out`, making
//!   subdirectories;
//! - `read`: reads `params.path` and returns its text and length;
//! - `write_at`: writes `params.text` to `params.path` (any path: escapes are tried this way);
//! - `symlink`: makes a symlink `params.link` (relative to the preopen `params.fd`, default 3, the
//!   first: `/out`) pointing to `params.target`, then reads `params.read` (when given); preview1 only;
//! - `list`: lists the entries of `params.path`;
//! - `env`: returns every environment variable;
//! - `entropy`: returns random numbers (from the WASI random source, through std's hasher keys) and
//!   clock readings, with a sleep of `params.sleep_ms` (default 10) between two of them.
//!
//! Attempts that fail report the error as their output (`allowed: false`), so a test can check that
//! the sandbox said no.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sandflow_sdk::{json, Context, TaskResult, Value};

fn text<'a>(ctx: &'a Context, name: &str) -> &'a str {
    ctx.params.get(name).and_then(Value::as_str).unwrap_or("")
}

fn outcome<T: Into<Value>>(result: std::io::Result<T>) -> TaskResult {
    TaskResult::with_output(match result {
        Ok(value) => json!({ "allowed": true, "value": value.into() }),
        Err(e) => json!({ "allowed": false, "error": e.to_string() }),
    })
}

fn write_bytes(name: &str, bytes: u64) -> std::io::Result<u64> {
    let mut file = std::fs::File::create(format!("/out/{name}"))?;
    let chunk = vec![b'g'; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(bytes)
}

fn read(path: &str) -> std::io::Result<Value> {
    let bytes = std::fs::read(path)?;
    Ok(json!({ "len": bytes.len(), "text": String::from_utf8_lossy(&bytes) }))
}

/// WASI preview1's `path_symlink`, called directly: std's wrapper is unstable.
#[cfg(all(target_os = "wasi", target_env = "p1"))]
fn symlink(target: &str, fd: u32, link: &str) -> std::io::Result<()> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn path_symlink(old: *const u8, old_len: usize, fd: u32, new: *const u8, new_len: usize) -> u16;
    }
    // SAFETY: both pointers and lengths come from live `&str`s.
    let errno = unsafe { path_symlink(target.as_ptr(), target.len(), fd, link.as_ptr(), link.len()) };
    match errno {
        0 => Ok(()),
        errno => Err(std::io::Error::other(format!("path_symlink: errno {errno}"))),
    }
}

#[cfg(not(all(target_os = "wasi", target_env = "p1")))]
fn symlink(_target: &str, _fd: u32, _link: &str) -> std::io::Result<()> {
    Err(std::io::Error::other("symlink: only in the preview1 build"))
}

fn use_grants(ctx: Context) -> Result<TaskResult, String> {
    match text(&ctx, "mode") {
        "write" => {
            let bytes = ctx.params.get("bytes").and_then(Value::as_u64).unwrap_or(1 << 20);
            Ok(outcome(write_bytes(text(&ctx, "name"), bytes)))
        }
        "tree" => {
            let files = ctx.params.get("files").and_then(Value::as_object).cloned().unwrap_or_default();
            let mut written = Vec::new();
            for (name, content) in files {
                let path = format!("/out/{name}");
                if let Some((dir, _)) = path.rsplit_once('/') {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
                }
                std::fs::write(&path, content.as_str().unwrap_or_default()).map_err(|e| format!("{path}: {e}"))?;
                written.push(name);
            }
            Ok(TaskResult::with_output(json!(written)))
        }
        "read" => Ok(outcome(read(text(&ctx, "path")))),
        "write_at" => Ok(outcome(std::fs::write(text(&ctx, "path"), text(&ctx, "text")).map(|()| "written"))),
        "symlink" => {
            let fd = ctx.params.get("fd").and_then(Value::as_u64).unwrap_or(3) as u32;
            let made = symlink(text(&ctx, "target"), fd, text(&ctx, "link"));
            let read_through = match ctx.params.get("read").and_then(Value::as_str) {
                Some(path) => match read(path) {
                    Ok(v) => json!({ "allowed": true, "value": v }),
                    Err(e) => json!({ "allowed": false, "error": e.to_string() }),
                },
                None => Value::Null,
            };
            let made = match made {
                Ok(()) => json!({ "allowed": true }),
                Err(e) => json!({ "allowed": false, "error": e.to_string() }),
            };
            Ok(TaskResult::with_output(json!({ "symlink": made, "read": read_through })))
        }
        "list" => Ok(outcome(std::fs::read_dir(text(&ctx, "path")).map(|entries| {
            let mut names: Vec<String> =
                entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            Value::from(names)
        }))),
        "env" => Ok(TaskResult::with_output(json!(std::env::vars().collect::<std::collections::BTreeMap<_, _>>()))),
        "entropy" => {
            let random: Vec<u64> = (0..4).map(|i| RandomState::new().hash_one(i)).collect();
            let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
            let start = Instant::now();
            let first = start.elapsed();
            std::thread::sleep(Duration::from_millis(ctx.params.get("sleep_ms").and_then(Value::as_u64).unwrap_or(10)));
            let slept = start.elapsed();
            eprintln!("wall {} ns", wall.as_nanos());
            Ok(TaskResult::with_output(json!({
                "random": random,
                "wall_ns": wall.as_nanos() as u64,
                "elapsed_ns": first.as_nanos() as u64,
                "after_sleep_ns": slept.as_nanos() as u64,
            })))
        }
        other => Err(format!("unknown mode `{other}`")),
    }
}

fn main() {
    let code = match sandflow_sdk::run_with(std::io::stdin().lock(), std::io::stdout().lock(), use_grants) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("{failure}");
            failure.exit_code()
        }
    };
    std::process::exit(code)
}
