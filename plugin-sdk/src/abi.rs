//! The types of ABI v1, shared by the host and by plugins written in Rust.
//!
//! `plugin-sdk/ABI.md` is the reference for authors in every language; these types are its Rust form.
//! The host parses a plugin's stdout into [`TaskResult`] with unknown fields refused, so a typo in a
//! field name fails the try instead of being silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The version of the command ABI that this crate speaks.
pub const ABI_VERSION: u32 = 1;

/// What a plugin reads on stdin: one JSON object describing the task try it is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskContext {
    /// Always [`ABI_VERSION`] for this crate.
    pub abi: u32,
    /// The DAG the task belongs to.
    #[serde(default)]
    pub dag_id: String,
    /// The DAG version (content hash) that the run pinned.
    #[serde(default)]
    pub dag_version: String,
    /// The DAG run.
    #[serde(default)]
    pub run_id: String,
    /// The task within the DAG.
    #[serde(default)]
    pub task_id: String,
    /// For a mapped task, which element of the mapped list this instance handles.
    #[serde(default)]
    pub map_index: Option<u64>,
    /// For a mapped task, the element itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_item: Option<Value>,
    /// 1 for the first try, 2 for the first retry, and so on.
    #[serde(default = "one")]
    pub try_number: u32,
    /// The run's logical date (RFC 3339), when it has one.
    #[serde(default)]
    pub logical_date: Option<String>,
    /// The interval of data the run covers, for scheduled runs.
    #[serde(default)]
    pub data_interval: Option<DataInterval>,
    /// The run's configuration, as given when it was triggered.
    #[serde(default)]
    pub conf: Map<String, Value>,
    /// The task's parameters, from the DAG file.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// The outputs of the upstream tasks, by task id.
    #[serde(default)]
    pub inputs: Map<String, Value>,
}

fn one() -> u32 {
    1
}

impl TaskContext {
    /// A context with every field empty: handy for tests and for `sandflow plugin run`.
    pub fn empty() -> Self {
        TaskContext {
            abi: ABI_VERSION,
            dag_id: String::new(),
            dag_version: String::new(),
            run_id: String::new(),
            task_id: String::new(),
            map_index: None,
            map_item: None,
            try_number: 1,
            logical_date: None,
            data_interval: None,
            conf: Map::new(),
            params: Map::new(),
            inputs: Map::new(),
        }
    }
}

/// A half-open interval `[start, end)` of RFC 3339 timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataInterval {
    /// Inclusive start.
    pub start: String,
    /// Exclusive end.
    pub end: String,
}

/// What a plugin writes on stdout: one JSON object. Empty stdout means `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    /// Handed to downstream tasks as `inputs[<this task id>]`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub output: Value,
    /// Named figures, stored with the try and charted in the UI.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// For branch tasks: the direct downstream tasks to follow; the others are skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Vec<String>>,
    /// For sensor tasks: whether the awaited condition holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<SensorResult>,
    /// Runs of other DAGs to start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger: Vec<TriggerRequest>,
}

/// A sensor's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorResult {
    /// `true` ends the wait with success; `false` asks to be poked again later.
    pub done: bool,
}

/// A request to start a run of another DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// The DAG to run.
    pub dag_id: String,
    /// The new run's configuration.
    #[serde(default)]
    pub conf: Map<String, Value>,
}

impl TaskResult {
    /// A result carrying `output` and nothing else.
    pub fn with_output(output: impl Into<Value>) -> Self {
        TaskResult { output: output.into(), ..TaskResult::default() }
    }

    /// Adds a metric.
    pub fn metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(name.into(), value);
        self
    }

    /// Parses a plugin's stdout: empty (or only white space) is `{}`.
    pub fn parse(stdout: &[u8]) -> Result<TaskResult, serde_json::Error> {
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(TaskResult::default());
        }
        serde_json::from_slice(stdout)
    }
}

impl From<Value> for TaskResult {
    fn from(output: Value) -> Self {
        TaskResult::with_output(output)
    }
}

impl From<()> for TaskResult {
    fn from((): ()) -> Self {
        TaskResult::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_stdout_is_an_empty_result() {
        assert_eq!(TaskResult::parse(b"").unwrap(), TaskResult::default());
        assert_eq!(TaskResult::parse(b" \n").unwrap(), TaskResult::default());
    }

    #[test]
    fn unknown_result_fields_are_refused() {
        let err = TaskResult::parse(br#"{"outptu": 1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `outptu`"), "{err}");
    }

    #[test]
    fn a_full_result_round_trips() {
        let text = r#"{"output":{"w":[1.0]},"metrics":{"loss":0.5},"branch":["a"],
            "sensor":{"done":false},"trigger":[{"dag_id":"d","conf":{"k":1}}]}"#;
        let result = TaskResult::parse(text.as_bytes()).unwrap();
        assert_eq!(result.metrics["loss"], 0.5);
        assert_eq!(result.branch.as_deref(), Some(&["a".to_string()][..]));
        assert_eq!(result.sensor, Some(SensorResult { done: false }));
        let again = TaskResult::parse(serde_json::to_string(&result).unwrap().as_bytes()).unwrap();
        assert_eq!(again, result);
    }

    #[test]
    fn a_minimal_context_parses_with_defaults() {
        let ctx: TaskContext = serde_json::from_str(r#"{"abi":1}"#).unwrap();
        assert_eq!(ctx.try_number, 1);
        assert!(ctx.params.is_empty());
    }
}
