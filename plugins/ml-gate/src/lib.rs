//! `ml_gate`: the quality gate of `dags/ml_training.toml` as a **branch** task. It reads the verdict
//! of an evaluation step and chooses which direct downstream task runs next: the publishing step
//! when the models passed, a reporting step when they did not. The scheduler skips the task not
//! chosen (and what only it leads to).
//!
//! Params (all optional):
//!
//! | param | default | meaning |
//! |---|---|---|
//! | `from` | `"evaluate"` | the upstream task whose output has `passed` (a boolean), e.g. `ml_evaluate` |
//! | `pass` | `"publish"` | the downstream task to follow when `passed` is true |
//! | `fail` | `"report"` | the downstream task to follow when `passed` is false |
//!
//! Result: `branch: [<chosen>]`; output `{passed, chosen}`; metric `passed` (1 or 0). The step
//! succeeds either way: failing the models is the branch's job, not an error. A missing input or a
//! `passed` that is not a boolean is an error.

use sandflow_sdk::{json, Context, TaskResult, Value};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default = "default_from")]
    pub from: String,
    #[serde(default = "default_pass")]
    pub pass: String,
    #[serde(default = "default_fail")]
    pub fail: String,
}

fn default_from() -> String {
    "evaluate".into()
}
fn default_pass() -> String {
    "publish".into()
}
fn default_fail() -> String {
    "report".into()
}

/// The operator.
pub fn handle(ctx: Context) -> Result<TaskResult, String> {
    let params: Params = ctx.params_as()?;
    for (name, task) in [("pass", &params.pass), ("fail", &params.fail)] {
        if task.trim().is_empty() {
            return Err(format!("params.{name} must name a downstream task"));
        }
    }
    let from = &params.from;
    let verdict = ctx.inputs.get(from).ok_or_else(|| {
        let known: Vec<&str> = ctx.inputs.keys().map(String::as_str).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        format!("no input from upstream task `{from}`, which should give the verdict {{passed}} (inputs: {known}; set params.from)")
    })?;
    let passed = match verdict.get("passed") {
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("inputs.{from}.passed: expected true or false, got {other}")),
        None => return Err(format!("inputs.{from} has no `passed`: is `{from}` an evaluation step (ml_evaluate)?")),
    };
    let chosen = if passed { &params.pass } else { &params.fail };
    eprintln!("gate: inputs.{from}.passed is {passed}: following `{chosen}`");
    let mut result = TaskResult::with_output(json!({ "passed": passed, "chosen": chosen }))
        .metric("passed", f64::from(u8::from(passed)));
    result.branch = Some(vec![chosen.clone()]);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(inputs: Value, params: Value) -> Context {
        serde_json::from_value(json!({ "abi": 1, "inputs": inputs, "params": params })).unwrap()
    }

    #[test]
    fn chooses_publish_or_report() {
        let result = handle(ctx(json!({ "evaluate": { "passed": true, "auc_min": 0.8 } }), json!({}))).unwrap();
        assert_eq!(result.branch, Some(vec!["publish".to_string()]));
        assert_eq!(result.output, json!({ "passed": true, "chosen": "publish" }));
        assert_eq!(result.metrics["passed"], 1.0);
        let result = handle(ctx(json!({ "evaluate": { "passed": false } }), json!({}))).unwrap();
        assert_eq!(result.branch, Some(vec!["report".to_string()]));
        assert_eq!(result.output, json!({ "passed": false, "chosen": "report" }));
    }

    #[test]
    fn params_rename_everything() {
        let params = json!({ "from": "judge", "pass": "ship", "fail": "alert" });
        let result = handle(ctx(json!({ "judge": { "passed": false }, "other": {} }), params.clone())).unwrap();
        assert_eq!(result.branch, Some(vec!["alert".to_string()]));
        let result = handle(ctx(json!({ "judge": { "passed": true } }), params)).unwrap();
        assert_eq!(result.branch, Some(vec!["ship".to_string()]));
    }

    #[test]
    fn the_result_is_valid_abi() {
        let text = br#"{"abi":1,"inputs":{"evaluate":{"passed":true}}}"#;
        let mut out = Vec::new();
        sandflow_sdk::run_with(&text[..], &mut out, handle).unwrap();
        let parsed = TaskResult::parse(&out).unwrap();
        assert_eq!(parsed.branch, Some(vec!["publish".to_string()]));
    }

    #[test]
    fn clear_errors() {
        let err = |inputs: Value, params: Value| handle(ctx(inputs, params)).unwrap_err();
        assert_eq!(
            err(json!({ "train": {} }), json!({})),
            "no input from upstream task `evaluate`, which should give the verdict {passed} (inputs: train; set params.from)"
        );
        assert_eq!(
            err(json!({ "evaluate": { "auc": 0.9 } }), json!({})),
            "inputs.evaluate has no `passed`: is `evaluate` an evaluation step (ml_evaluate)?"
        );
        assert_eq!(
            err(json!({ "evaluate": { "passed": "yes" } }), json!({})),
            "inputs.evaluate.passed: expected true or false, got \"yes\""
        );
        assert_eq!(
            err(json!({ "evaluate": { "passed": true } }), json!({ "pass": "" })),
            "params.pass must name a downstream task"
        );
        assert!(err(json!({}), json!({ "form": "x" })).starts_with("params: unknown field `form`"));
    }
}
