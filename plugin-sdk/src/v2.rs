//! ABI v2: write an operator as a component of the `sandflow:operator` world
//! (`plugin-sdk/wit/operator.wit`), with the host's structured log, live progress and metrics.
//!
//! The handler is the same function as for ABI v1, from a typed [`Context`] to a [`TaskResult`];
//! [`operator!`](crate::operator) exports it as the world's `run`:
//!
//! ```ignore
//! use sandflow_sdk::{v2, Context, TaskResult};
//!
//! fn count(ctx: Context) -> Result<TaskResult, String> {
//!     let words = ctx.params.get("text").and_then(|v| v.as_str()).unwrap_or("").split_whitespace().count();
//!     v2::progress(1.0, "counted");
//!     v2::log::info(&format!("{words} words"));
//!     Ok(TaskResult::with_output(words).metric("words", words as f64))
//! }
//!
//! sandflow_sdk::operator!(count);
//! ```
//!
//! Build the crate as a `cdylib` for `wasm32-wasip2`: the result is a component the host runs as
//! ABI v2 (`sandflow plugin inspect` says `sandflow:operator@2 operator`). Natively the host calls
//! below are no-ops, so handlers stay unit-testable with `cargo test`.

use std::fmt::Display;

use serde_json::{Map, Value};

use crate::{Context, SensorResult, TaskContext, TaskResult};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "operator",
        pub_export_macro: true,
        export_macro_name: "__export_operator",
        default_bindings_module: "sandflow_sdk::v2::bindings",
    });
}

use bindings::sandflow::operator::{host, types as wit};

/// The ABI version of this world.
pub const ABI_VERSION: u32 = 2;

/// The level of a log line.
pub use host::Level;

/// Writes one line to the try's log with its level.
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    host::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    let _ = (level, message);
}

/// Log lines by level: `v2::log::info("...")`.
pub mod log {
    use super::Level;
    /// A line at `debug`.
    pub fn debug(message: &str) {
        super::log(Level::Debug, message)
    }
    /// A line at `info`.
    pub fn info(message: &str) {
        super::log(Level::Info, message)
    }
    /// A line at `warn`.
    pub fn warn(message: &str) {
        super::log(Level::Warn, message)
    }
    /// A line at `error`.
    pub fn error(message: &str) {
        super::log(Level::Error, message)
    }
}

/// Says how far the try has come (0.0 to 1.0) and what it is doing; shown live in the API and UI.
pub fn progress(fraction: f32, message: &str) {
    #[cfg(target_family = "wasm")]
    host::progress(fraction, message);
    #[cfg(not(target_family = "wasm"))]
    let _ = (fraction, message);
}

/// Sends one named figure, stored with the try (the result's own metrics win on the same name).
pub fn metric(name: &str, value: f64) {
    #[cfg(target_family = "wasm")]
    host::metric(name, value);
    #[cfg(not(target_family = "wasm"))]
    let _ = (name, value);
}

/// The typed context of ABI v1 from the world's record (its JSON text fields parsed).
pub fn context_from_wit(ctx: wit::TaskContext) -> Result<TaskContext, String> {
    fn object(field: &str, text: &str) -> Result<Map<String, Value>, String> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(format!("context field `{field}` is not a JSON object")),
            Err(e) => Err(format!("context field `{field}` is not JSON: {e}")),
        }
    }
    let map_item = match ctx.map_item {
        None => None,
        Some(text) => {
            Some(serde_json::from_str(&text).map_err(|e| format!("context field `map_item` is not JSON: {e}"))?)
        }
    };
    Ok(TaskContext {
        abi: ABI_VERSION,
        dag_id: ctx.dag_id,
        dag_version: ctx.dag_version,
        run_id: ctx.run_id,
        task_id: ctx.task_id,
        map_index: ctx.map_index.map(u64::from),
        map_item,
        try_number: ctx.try_number,
        logical_date: ctx.logical_date,
        data_interval: ctx.data_interval.map(|d| crate::DataInterval { start: d.start, end: d.end }),
        conf: object("conf", &ctx.conf)?,
        params: object("params", &ctx.params)?,
        inputs: object("inputs", &ctx.inputs)?,
    })
}

/// The world's result record from a [`TaskResult`].
pub fn result_to_wit(result: TaskResult) -> wit::TaskResult {
    wit::TaskResult {
        output: (!result.output.is_null()).then(|| result.output.to_string()),
        metrics: result.metrics.into_iter().collect(),
        branch: result.branch,
        sensor_done: result.sensor.map(|SensorResult { done }| done),
        trigger: result
            .trigger
            .into_iter()
            .map(|t| wit::TriggerRequest { dag_id: t.dag_id, conf: Value::Object(t.conf).to_string() })
            .collect(),
    }
}

/// What [`operator!`](crate::operator)'s `run` does: the context in, the handler, the result out.
#[doc(hidden)]
pub fn call<F, R, E>(handler: F, context: wit::TaskContext) -> Result<wit::TaskResult, wit::TaskError>
where
    F: FnOnce(Context) -> Result<R, E>,
    R: Into<TaskResult>,
    E: Display,
{
    let context = context_from_wit(context).map_err(|message| wit::TaskError { message })?;
    match handler(context) {
        Ok(result) => Ok(result_to_wit(result.into())),
        Err(e) => Err(wit::TaskError { message: e.to_string() }),
    }
}

/// Exports `handler` (a `fn(Context) -> Result<impl Into<TaskResult>, impl Display>`) as the
/// `run` of the `sandflow:operator` world. Use it once, at the top of the crate.
#[macro_export]
macro_rules! operator {
    ($handler:path) => {
        struct __SandflowOperator;
        impl $crate::v2::bindings::Guest for __SandflowOperator {
            fn run(
                context: $crate::v2::bindings::TaskContext,
            ) -> ::core::result::Result<$crate::v2::bindings::TaskResult, $crate::v2::bindings::TaskError> {
                $crate::v2::call($handler, context)
            }
        }
        $crate::v2::bindings::__export_operator!(__SandflowOperator with_types_in $crate::v2::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(params: &str) -> wit::TaskContext {
        wit::TaskContext {
            dag_id: "d".into(),
            dag_version: String::new(),
            run_id: "r".into(),
            task_id: "t".into(),
            map_index: Some(1),
            map_item: Some("[1,2]".into()),
            try_number: 2,
            logical_date: None,
            data_interval: None,
            conf: "{}".into(),
            params: params.into(),
            inputs: r#"{"up":{"n":3}}"#.into(),
            dag_runs: None,
        }
    }

    fn handler(ctx: Context) -> Result<TaskResult, String> {
        let n: i64 = ctx.input_as::<Value>("up")?["n"].as_i64().ok_or("no n")?;
        if ctx.params.contains_key("fail") {
            return Err(format!("failing at try {}", ctx.try_number));
        }
        Ok(TaskResult::with_output(serde_json::json!({"n": n, "item": ctx.map_item})).metric("n", n as f64))
    }

    #[test]
    fn the_handler_sees_parsed_json_and_returns_json_text() {
        let result = call(handler, context("{}")).unwrap();
        assert_eq!(result.output.as_deref(), Some(r#"{"item":[1,2],"n":3}"#));
        assert_eq!(result.metrics, vec![("n".to_string(), 3.0)]);
    }

    #[test]
    fn an_error_becomes_the_task_error() {
        let err = call(handler, context(r#"{"fail":true}"#)).unwrap_err();
        assert_eq!(err.message, "failing at try 2");
        let err = call(handler, context("[1]")).unwrap_err();
        assert_eq!(err.message, "context field `params` is not a JSON object");
    }
}
