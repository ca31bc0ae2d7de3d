//! `ml_publish`: turns a trained model that passed evaluation into a model card, the last step of
//! `dags/ml_training.toml`. A model that did not pass is refused: the step fails, so the run shows red
//! and nothing is published.
//!
//! Params (all optional):
//!
//! | param | default | meaning |
//! |---|---|---|
//! | `name` | the DAG id (`model` if none) | the model's name, the first part of its id |
//! | `model_from` | `"train"` | the upstream task whose output is the model `{weights, bias}` |
//! | `evaluation_from` | `"evaluate"` | the upstream task whose output is the `ml_evaluate` verdict |
//!
//! Output, the model card: `{model_id, name, weights, bias, features, stats, auc, scores,
//! published_at, source}`. `model_id` is `<name>-<16 hex digits>`, a hash of the weights and bias: the
//! same model always gets the same id. `published_at` is the run's logical date; `source` names the
//! DAG, its version and the run.

use sandflow_sdk::{json, Context, TaskResult, Value};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_model_from")]
    pub model_from: String,
    #[serde(default = "default_evaluation_from")]
    pub evaluation_from: String,
}

fn default_model_from() -> String {
    "train".into()
}
fn default_evaluation_from() -> String {
    "evaluate".into()
}

/// A linear model, as `logreg` outputs it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Model {
    pub weights: Vec<f64>,
    pub bias: f64,
}

/// The part of `ml_evaluate`'s output that publishing needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Verdict {
    pub auc: f64,
    pub min_auc: f64,
    pub passed: bool,
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub stats: Value,
    #[serde(default)]
    pub accuracy: Option<f64>,
    #[serde(default)]
    pub precision: Option<f64>,
    #[serde(default)]
    pub recall: Option<f64>,
    #[serde(default)]
    pub log_loss: Option<f64>,
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// `<name>-<16 hex digits>`: a hash of the exact bits of the weights and the bias.
pub fn model_id(name: &str, model: &Model) -> String {
    let bits = model.weights.iter().chain([&model.bias]).flat_map(|v| v.to_bits().to_le_bytes());
    format!("{name}-{:016x}", fnv1a(bits))
}

fn input<T: serde::de::DeserializeOwned>(ctx: &Context, task: &str, param: &str, what: &str) -> Result<T, String> {
    let value = ctx.inputs.get(task).ok_or_else(|| {
        let known: Vec<&str> = ctx.inputs.keys().map(String::as_str).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        format!("no input from upstream task `{task}`, which should give {what} (inputs: {known}; set params.{param})")
    })?;
    serde_json::from_value(value.clone()).map_err(|e| format!("inputs.{task}: not {what}: {e}"))
}

/// The operator.
pub fn handle(ctx: Context) -> Result<TaskResult, String> {
    let params: Params = ctx.params_as()?;
    let verdict: Verdict =
        input(&ctx, &params.evaluation_from, "evaluation_from", "an ml_evaluate verdict {auc, min_auc, passed}")?;
    if !verdict.passed {
        return Err(format!("evaluation did not pass: auc {:.2} < min {:.2}", verdict.auc, verdict.min_auc));
    }
    let model: Model = input(&ctx, &params.model_from, "model_from", "a model {weights, bias}")?;
    if model.weights.is_empty() {
        return Err(format!("inputs.{}: the model has no weights", params.model_from));
    }
    if let Some(features) = &verdict.features {
        if features.len() != model.weights.len() {
            return Err(format!(
                "the model has {} weights but evaluation describes {} features: were they made by the same run?",
                model.weights.len(),
                features.len()
            ));
        }
    }
    let name = match params.name {
        Some(name) if name.trim().is_empty() => return Err("params.name must not be empty".into()),
        Some(name) => name,
        None if !ctx.dag_id.is_empty() => ctx.dag_id.clone(),
        None => "model".into(),
    };
    let id = model_id(&name, &model);
    eprintln!("publishing {id}: {} weights, auc {:.4} (min {:.2})", model.weights.len(), verdict.auc, verdict.min_auc);
    let card = json!({
        "model_id": id,
        "name": name,
        "weights": model.weights,
        "bias": model.bias,
        "features": verdict.features,
        "stats": verdict.stats,
        "auc": verdict.auc,
        "scores": {
            "accuracy": verdict.accuracy,
            "precision": verdict.precision,
            "recall": verdict.recall,
            "log_loss": verdict.log_loss,
        },
        "published_at": ctx.logical_date,
        "source": { "dag_id": ctx.dag_id, "dag_version": ctx.dag_version, "run_id": ctx.run_id },
    });
    Ok(TaskResult::with_output(card).metric("auc", verdict.auc).metric("weights", model.weights.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(evaluate: Value, params: Value) -> Context {
        serde_json::from_value(json!({
            "abi": 1,
            "dag_id": "ml_training",
            "dag_version": "v0123456789abcdef",
            "run_id": "scheduled-2026-11-28T00:00:00Z",
            "logical_date": "2026-11-28T00:00:00Z",
            "params": params,
            "inputs": {
                "train": { "weights": [0.5, -1.25], "bias": 0.1, "loss": 0.3 },
                "evaluate": evaluate,
            },
        }))
        .unwrap()
    }

    fn verdict(auc: f64, passed: bool) -> Value {
        json!({
            "auc": auc, "min_auc": 0.7, "passed": passed, "accuracy": 0.9, "precision": 0.5, "recall": 0.4,
            "log_loss": 0.3, "features": ["a", "b"], "stats": { "mean": { "a": 1.0 }, "std": { "a": 2.0 } },
        })
    }

    #[test]
    fn publishes_a_model_card() {
        let result = handle(ctx(verdict(0.87, true), json!({}))).unwrap();
        let card = &result.output;
        let id = card["model_id"].as_str().unwrap();
        let (name, hash) = id.rsplit_once('-').unwrap();
        assert_eq!(name, "ml_training");
        assert_eq!(hash.len(), 16);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(card["weights"], json!([0.5, -1.25]));
        assert_eq!(card["bias"], 0.1);
        assert_eq!(card["auc"], 0.87);
        assert_eq!(card["features"], json!(["a", "b"]));
        assert_eq!(card["stats"]["std"]["a"], 2.0);
        assert_eq!(card["scores"]["recall"], 0.4);
        assert_eq!(card["published_at"], "2026-11-28T00:00:00Z");
        assert_eq!(card["source"]["dag_version"], "v0123456789abcdef");
        assert_eq!(result.metrics["auc"], 0.87);
        // The same model, the same id; a named model keeps the hash.
        let named = handle(ctx(verdict(0.87, true), json!({ "name": "fraud" }))).unwrap();
        assert_eq!(named.output["model_id"], format!("fraud-{hash}"));
    }

    #[test]
    fn the_id_is_a_hash_of_the_weights() {
        let a = Model { weights: vec![0.5, -1.25], bias: 0.1 };
        assert_eq!(model_id("m", &a), model_id("m", &a.clone()));
        assert_ne!(model_id("m", &a), model_id("m", &Model { weights: vec![0.5, -1.25], bias: 0.2 }));
        assert_ne!(model_id("m", &a), model_id("m", &Model { weights: vec![-1.25, 0.5], bias: 0.1 }));
    }

    #[test]
    fn a_model_that_did_not_pass_is_refused() {
        let mut v = verdict(0.6149, false);
        let err = handle(ctx(v.clone(), json!({}))).unwrap_err();
        assert_eq!(err, "evaluation did not pass: auc 0.61 < min 0.70");
        // Through the SDK's protocol: exit code 1, the message on stderr.
        v["passed"] = json!(false);
        let text = serde_json::to_vec(&serde_json::to_value(ctx(v, json!({}))).unwrap()).unwrap();
        let failure = sandflow_sdk::run_with(&text[..], Vec::new(), handle).unwrap_err();
        assert_eq!(failure.exit_code(), 1);
        assert_eq!(failure.to_string(), "error: evaluation did not pass: auc 0.61 < min 0.70");
    }

    #[test]
    fn clear_errors() {
        let err = |evaluate: Value, params: Value| handle(ctx(evaluate, params)).unwrap_err();
        assert!(err(json!({ "auc": 0.9 }), json!({})).starts_with(
            "inputs.evaluate: not an ml_evaluate verdict {auc, min_auc, passed}: missing field `min_auc`"
        ));
        assert_eq!(
            err(verdict(0.9, true), json!({ "model_from": "fit" })),
            "no input from upstream task `fit`, which should give a model {weights, bias} (inputs: evaluate, train; set params.model_from)"
        );
        let mut three = verdict(0.9, true);
        three["features"] = json!(["a", "b", "c"]);
        assert_eq!(
            err(three, json!({})),
            "the model has 2 weights but evaluation describes 3 features: were they made by the same run?"
        );
        assert_eq!(err(verdict(0.9, true), json!({ "name": " " })), "params.name must not be empty");
        assert!(err(verdict(0.9, true), json!({ "nmae": "x" })).starts_with("params: unknown field `nmae`"));
    }
}
