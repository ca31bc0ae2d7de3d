//! Write a Sandflow operator in Rust as one function from a typed task context to a typed result.
//!
//! A Sandflow plugin is a WASI command: it reads the task context as JSON on stdin, writes its result
//! as JSON on stdout, logs on stderr, and exits 0 on success (`plugin-sdk/ABI.md` has the whole
//! contract). This crate does that protocol so the author writes only the logic:
//!
//! ```no_run
//! use sandflow_sdk::{Context, TaskResult};
//! use serde_json::json;
//!
//! fn double(ctx: Context) -> Result<TaskResult, String> {
//!     let n = ctx.params.get("n").and_then(|v| v.as_i64()).ok_or("params.n must be an integer")?;
//!     Ok(TaskResult::with_output(json!({ "doubled": n * 2 })).metric("n", n as f64))
//! }
//!
//! fn main() {
//!     sandflow_sdk::run(double)
//! }
//! ```
//!
//! The same crate builds for `wasm32-wasip1`, `wasm32-wasip2` and natively; natively the handler is a
//! plain function, so its logic is unit-tested with `cargo test` and no wasm runtime at all.
//!
//! Exit codes: 0 success; 1 the handler returned an error (logged on stderr); 2 the context on stdin
//! was not valid ABI v1 JSON; 3 the result could not be written.
#![deny(missing_docs)]

pub mod abi;
#[cfg(feature = "v2")]
pub mod v2;

use std::fmt::Display;
use std::io::{Read, Write};

pub use abi::{DataInterval, SensorResult, TaskContext, TaskResult, TriggerRequest, ABI_VERSION};
pub use serde_json::{json, Map, Value};

/// The task context a handler receives. An alias, so that handlers read naturally.
pub type Context = TaskContext;

/// Exit code when the handler returns an error.
pub const EXIT_HANDLER_ERROR: i32 = 1;
/// Exit code when stdin is not a valid task context.
pub const EXIT_BAD_CONTEXT: i32 = 2;
/// Exit code when the result cannot be serialised or written.
pub const EXIT_BAD_RESULT: i32 = 3;

impl TaskContext {
    /// Deserialises the task's `params` into a typed struct, naming the field that did not fit.
    pub fn params_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(Value::Object(self.params.clone())).map_err(|e| format!("params: {e}"))
    }

    /// Deserialises one upstream task's output into a typed value.
    pub fn input_as<T: serde::de::DeserializeOwned>(&self, task_id: &str) -> Result<T, String> {
        let value = self.inputs.get(task_id).ok_or_else(|| format!("no input from upstream task `{task_id}`"))?;
        serde_json::from_value(value.clone()).map_err(|e| format!("inputs.{task_id}: {e}"))
    }
}

/// Runs `handler` under the ABI v1 protocol and exits the process; call it from `main`.
pub fn run<F, R, E>(handler: F) -> !
where
    F: FnOnce(Context) -> Result<R, E>,
    R: Into<TaskResult>,
    E: Display,
{
    let code = match run_with(std::io::stdin().lock(), std::io::stdout().lock(), handler) {
        Ok(()) => 0,
        Err(failure) => {
            eprintln!("{failure}");
            failure.exit_code()
        }
    };
    std::process::exit(code)
}

/// Why [`run_with`] failed, with the exit code that [`run`] uses for it.
#[derive(Debug)]
pub enum Failure {
    /// stdin was not a task context.
    BadContext(String),
    /// The handler returned an error.
    Handler(String),
    /// The result could not be written.
    BadResult(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::BadContext(_) => EXIT_BAD_CONTEXT,
            Failure::Handler(_) => EXIT_HANDLER_ERROR,
            Failure::BadResult(_) => EXIT_BAD_RESULT,
        }
    }
}

impl Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadContext(e) => write!(f, "error: the task context on stdin is not ABI v1 JSON: {e}"),
            Failure::Handler(e) => write!(f, "error: {e}"),
            Failure::BadResult(e) => write!(f, "error: could not write the result: {e}"),
        }
    }
}

/// The protocol over any reader and writer: what [`run`] does, without exiting. Useful in tests.
pub fn run_with<F, R, E>(mut input: impl Read, mut output: impl Write, handler: F) -> Result<(), Failure>
where
    F: FnOnce(Context) -> Result<R, E>,
    R: Into<TaskResult>,
    E: Display,
{
    let mut text = Vec::new();
    input.read_to_end(&mut text).map_err(|e| Failure::BadContext(e.to_string()))?;
    let context: Context = serde_json::from_slice(&text).map_err(|e| Failure::BadContext(e.to_string()))?;
    if context.abi != ABI_VERSION {
        return Err(Failure::BadContext(format!(
            "abi {} is not supported (this plugin speaks {ABI_VERSION})",
            context.abi
        )));
    }
    let result: TaskResult = handler(context).map_err(|e| Failure::Handler(e.to_string()))?.into();
    if let Some((name, value)) = result.metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Err(Failure::BadResult(format!("metric `{name}` is {value}: JSON carries only finite numbers")));
    }
    serde_json::to_writer(&mut output, &result).map_err(|e| Failure::BadResult(e.to_string()))?;
    output.flush().map_err(|e| Failure::BadResult(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ctx: Context) -> Result<TaskResult, String> {
        match ctx.params.get("fail") {
            Some(_) => Err("asked to fail".into()),
            None => Ok(TaskResult::with_output(json!(42)).metric("m", 1.5)),
        }
    }

    #[test]
    fn writes_the_result_as_json() {
        let mut out = Vec::new();
        run_with(&br#"{"abi":1}"#[..], &mut out, answer).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"output":42,"metrics":{"m":1.5}}"#);
    }

    #[test]
    fn a_handler_error_is_a_failure_with_exit_code_1() {
        let err = run_with(&br#"{"abi":1,"params":{"fail":true}}"#[..], Vec::new(), answer).unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert_eq!(err.to_string(), "error: asked to fail");
    }

    #[test]
    fn a_bad_context_is_exit_code_2() {
        let err = run_with(&b"not json"[..], Vec::new(), answer).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = run_with(&br#"{"abi":7}"#[..], Vec::new(), answer).unwrap_err();
        assert!(err.to_string().contains("abi 7 is not supported"), "{err}");
    }

    #[test]
    fn a_non_finite_metric_is_refused_before_it_reaches_the_host() {
        let err = run_with(&br#"{"abi":1}"#[..], Vec::new(), |_| {
            Ok::<_, String>(TaskResult::default().metric("loss", f64::NAN))
        })
        .unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert_eq!(
            err.to_string(),
            "error: could not write the result: metric `loss` is NaN: JSON carries only finite numbers"
        );
    }

    #[test]
    fn typed_params() {
        #[derive(serde::Deserialize)]
        struct P {
            rows: u32,
        }
        let ctx: Context = serde_json::from_str(r#"{"abi":1,"params":{"rows":"x"}}"#).unwrap();
        let err = ctx.params_as::<P>().err().unwrap();
        assert!(err.starts_with("params: invalid type"), "{err}");
        let ctx: Context = serde_json::from_str(r#"{"abi":1,"params":{"rows":3}}"#).unwrap();
        assert_eq!(ctx.params_as::<P>().unwrap().rows, 3);
    }
}
