//! ABI v2: the `sandflow:operator` component world (plugin-sdk/wit/operator.wit). The host calls the
//! exported `run` with a typed context and reads a typed result; the plugin may call the host's
//! `log`, `progress` and `metric`. This module turns ABI v1's JSON context into the typed record and
//! the typed result back into the [`TaskResult`] every other part of Sandflow reads, so the rest of
//! the host does not know which ABI a plugin speaks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sandflow_sdk::{SensorResult, TaskResult, TriggerRequest};
use serde_json::{Map, Value};

use crate::pipes::CappedPipe;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../plugin-sdk/wit",
        world: "operator",
        exports: { default: async },
    });
}

pub(crate) use bindings::sandflow::operator::host::Level;
pub(crate) use bindings::sandflow::operator::types as wit;
pub(crate) use bindings::{Operator, OperatorPre};

/// The WIT package a v2 operator is built against, as `plugin inspect` names it.
pub const OPERATOR_WORLD: &str = "sandflow:operator/operator@2.0.0";

/// How far a running try says it has come (`host.progress`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// From 0.0 to 1.0.
    pub fraction: f32,
    /// What it is doing.
    pub message: String,
}

/// The latest progress of a try, shared with whoever watches it run.
pub(crate) type SharedProgress = Arc<Mutex<Option<Progress>>>;

/// What a v2 plugin's host calls reach: the try's log, its progress and its metrics.
pub(crate) struct OperatorHost {
    pub(crate) log: CappedPipe,
    pub(crate) progress: SharedProgress,
    pub(crate) metrics: BTreeMap<String, f64>,
}

/// The longest progress message kept; longer ones are cut (the log holds the whole story).
const MAX_PROGRESS_MESSAGE: usize = 1024;

impl bindings::sandflow::operator::host::Host for OperatorHost {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        };
        let mut line = format!("{level} {message}");
        if !line.ends_with('\n') {
            line.push('\n');
        }
        self.log.write_host(line.as_bytes());
    }

    fn progress(&mut self, fraction: f32, message: String) {
        let fraction = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
        let message = cut_to(message, MAX_PROGRESS_MESSAGE);
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(Progress { fraction, message });
    }

    fn metric(&mut self, name: String, value: f64) {
        self.metrics.insert(name, value);
    }
}

impl bindings::sandflow::operator::types::Host for OperatorHost {}

fn cut_to(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The typed context of ABI v2, from the JSON context of ABI v1 (what the scheduler sends every
/// plugin). Fails only on a context that is not a JSON object or has fields of the wrong type.
pub(crate) fn context_from_json(input: &[u8]) -> Result<wit::TaskContext, String> {
    let value: Value = if input.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(input).map_err(|e| format!("the task context is not JSON: {e}"))?
    };
    let Value::Object(mut fields) = value else { return Err("the task context is not a JSON object".into()) };
    let mut take = |key: &str| fields.remove(key).filter(|v| !v.is_null());
    let text = |key: &str, v: Option<Value>| -> Result<String, String> {
        match v {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(format!("context field `{key}` is not a string: {other}")),
        }
    };
    let object = |key: &str, v: Option<Value>| -> Result<String, String> {
        match v {
            None => Ok("{}".into()),
            Some(v @ Value::Object(_)) => Ok(v.to_string()),
            Some(other) => Err(format!("context field `{key}` is not an object: {}", kind(&other))),
        }
    };
    let number = |key: &str, v: Option<Value>, default: u32| -> Result<u32, String> {
        match v {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("context field `{key}` is not a small whole number: {v}")),
        }
    };
    let data_interval = match take("data_interval") {
        None => None,
        Some(Value::Object(mut interval)) => {
            let mut end = |key: &str| match interval.remove(key) {
                Some(Value::String(s)) => Ok(s),
                _ => Err(format!("context field `data_interval.{key}` is missing or not a string")),
            };
            Some(wit::DataInterval { start: end("start")?, end: end("end")? })
        }
        Some(other) => return Err(format!("context field `data_interval` is not an object: {}", kind(&other))),
    };
    Ok(wit::TaskContext {
        dag_id: text("dag_id", take("dag_id"))?,
        dag_version: text("dag_version", take("dag_version"))?,
        run_id: text("run_id", take("run_id"))?,
        task_id: text("task_id", take("task_id"))?,
        map_index: take("map_index").map(|v| number("map_index", Some(v), 0)).transpose()?,
        map_item: take("map_item").map(|v| v.to_string()),
        try_number: number("try_number", take("try_number"), 1)?,
        logical_date: take("logical_date").map(|v| text("logical_date", Some(v))).transpose()?,
        data_interval,
        conf: object("conf", take("conf"))?,
        params: object("params", take("params"))?,
        inputs: object("inputs", take("inputs"))?,
        dag_runs: take("dag_runs").map(|v| v.to_string()),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The [`TaskResult`] a v2 plugin returned, with the metrics it sent through `host.metric` (the
/// result's own metrics win on a name both have). Fails on JSON text that does not parse, or a
/// trigger's conf that is not an object: the same mistakes ABI v1 refuses as an invalid result.
pub(crate) fn result_from_wit(
    result: wit::TaskResult,
    mut sent_metrics: BTreeMap<String, f64>,
) -> Result<TaskResult, String> {
    let output = match result.output {
        None => Value::Null,
        Some(text) => serde_json::from_str(&text).map_err(|e| format!("`output` is not JSON text: {e}"))?,
    };
    sent_metrics.extend(result.metrics);
    if let Some((name, _)) = sent_metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Err(format!("metric `{name}` is not a finite number"));
    }
    let trigger = result
        .trigger
        .into_iter()
        .map(|t| {
            let conf = if t.conf.trim().is_empty() {
                Map::new()
            } else {
                match serde_json::from_str(&t.conf) {
                    Ok(Value::Object(conf)) => conf,
                    Ok(other) => {
                        return Err(format!("trigger of `{}`: conf is {}, not an object", t.dag_id, kind(&other)))
                    }
                    Err(e) => return Err(format!("trigger of `{}`: conf is not JSON text: {e}", t.dag_id)),
                }
            };
            Ok(TriggerRequest { dag_id: t.dag_id, conf })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(TaskResult {
        output,
        metrics: sent_metrics,
        branch: result.branch,
        sensor: result.sensor_done.map(|done| SensorResult { done }),
        trigger,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_context_becomes_the_typed_record() {
        let json = br#"{"abi":1,"dag_id":"d","run_id":"r","task_id":"t","map_index":2,"map_item":{"a":1},
            "try_number":3,"logical_date":"2026-01-01T00:00:00Z",
            "data_interval":{"start":"2026-01-01T00:00:00Z","end":"2026-01-02T00:00:00Z"},
            "params":{"x":[1,2]},"inputs":{"up":{"v":1}},"unknown":"ignored"}"#;
        let ctx = context_from_json(json).unwrap();
        assert_eq!((ctx.dag_id.as_str(), ctx.task_id.as_str(), ctx.try_number), ("d", "t", 3));
        assert_eq!(ctx.map_index, Some(2));
        assert_eq!(ctx.map_item.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(ctx.params, r#"{"x":[1,2]}"#);
        assert_eq!(ctx.inputs, r#"{"up":{"v":1}}"#);
        assert_eq!(ctx.conf, "{}");
        assert_eq!(ctx.data_interval.unwrap().end, "2026-01-02T00:00:00Z");
        let empty = context_from_json(b"").unwrap();
        assert_eq!((empty.try_number, empty.map_index, empty.params.as_str()), (1, None, "{}"));
    }

    #[test]
    fn a_malformed_context_is_refused_with_the_field() {
        assert!(context_from_json(b"[1]").unwrap_err().contains("not a JSON object"));
        assert!(context_from_json(br#"{"params":[1]}"#).unwrap_err().contains("`params` is not an object"));
        assert!(context_from_json(br#"{"try_number":-1}"#).unwrap_err().contains("try_number"));
    }

    #[test]
    fn the_typed_result_becomes_a_task_result_with_sent_metrics() {
        let result = wit::TaskResult {
            output: Some(r#"{"rows":3}"#.into()),
            metrics: vec![("rows".into(), 3.0)],
            branch: Some(vec!["next".into()]),
            sensor_done: None,
            trigger: vec![wit::TriggerRequest { dag_id: "other".into(), conf: String::new() }],
        };
        let sent = BTreeMap::from([("rows".to_string(), 1.0), ("seen".to_string(), 7.0)]);
        let parsed = result_from_wit(result, sent).unwrap();
        assert_eq!(parsed.output, serde_json::json!({"rows": 3}));
        assert_eq!(parsed.metrics, BTreeMap::from([("rows".to_string(), 3.0), ("seen".to_string(), 7.0)]));
        assert_eq!(parsed.trigger[0].dag_id, "other");
        assert_eq!(parsed.branch, Some(vec!["next".to_string()]));
    }

    #[test]
    fn a_result_with_bad_json_text_is_invalid() {
        let bad = |output: &str, conf: &str| wit::TaskResult {
            output: Some(output.into()),
            metrics: vec![],
            branch: None,
            sensor_done: None,
            trigger: vec![wit::TriggerRequest { dag_id: "d".into(), conf: conf.into() }],
        };
        assert!(result_from_wit(bad("{nope", ""), BTreeMap::new()).unwrap_err().contains("`output` is not JSON"));
        assert!(result_from_wit(bad("1", "[1]"), BTreeMap::new()).unwrap_err().contains("not an object"));
        let nan = BTreeMap::from([("x".to_string(), f64::NAN)]);
        assert!(result_from_wit(bad("1", ""), nan).unwrap_err().contains("finite"));
    }
}
