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
//! | `mode` | `"publish"` | `"report"`: publish nothing and record why (see below) |
//!
//! Output, the model card: `{model_id, name, weights, bias, features, stats, auc, scores,
//! published_at, source}`. `model_id` is `<name>-<16 hex digits>`, a hash of the weights and bias: the
//! same model always gets the same id. `published_at` is the run's logical date; `source` names the
//! DAG, its version and the run.
//!
//! **One model per customer.** When the model input is a *list* (a training task mapped over the
//! customers, evaluated by `ml_evaluate` into `customers: [...]`), the step publishes one card per
//! customer: `{models: [card + customer], not_published: [{customer, reason}], published_at, source}`.
//! Each card is as above with `customer`, its own scores, and `model_id` `<name>-<customer>-<16 hex
//! digits>`. A model is matched to its scores by `customer`, else by position. A customer whose
//! evaluation was skipped (a single-class holdout) was never scored, so its model is not published:
//! it is listed in `not_published`. The whole step is refused, as for one model, unless the
//! evaluation `passed`.
//!
//! **Report mode** (`mode = "report"`), for the branch a quality gate takes when the models did not
//! pass: reads only the verdict and outputs `{published: false, passed, reason, min_auc, ...}` (for one
//! model its `auc`; for one model per customer `auc_mean`, `auc_min`, `below_min`, `skipped` and each
//! customer's `{customer, auc, passed, reason}`). It always succeeds when the verdict is readable.

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
    #[serde(default)]
    pub mode: Mode,
}

/// What the step does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Publish the model(s) that passed, refuse otherwise.
    #[default]
    Publish,
    /// Publish nothing; record the verdict and why.
    Report,
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

fn raw_input<'a>(ctx: &'a Context, task: &str, param: &str, what: &str) -> Result<&'a Value, String> {
    ctx.inputs.get(task).ok_or_else(|| {
        let known: Vec<&str> = ctx.inputs.keys().map(String::as_str).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        format!("no input from upstream task `{task}`, which should give {what} (inputs: {known}; set params.{param})")
    })
}

fn input<T: serde::de::DeserializeOwned>(ctx: &Context, task: &str, param: &str, what: &str) -> Result<T, String> {
    let value = raw_input(ctx, task, param, what)?;
    serde_json::from_value(value.clone()).map_err(|e| format!("inputs.{task}: not {what}: {e}"))
}

/// The name of the model(s), from params or the DAG.
fn model_name(params: &Params, ctx: &Context) -> Result<String, String> {
    match &params.name {
        Some(name) if name.trim().is_empty() => Err("params.name must not be empty".into()),
        Some(name) => Ok(name.clone()),
        None if !ctx.dag_id.is_empty() => Ok(ctx.dag_id.clone()),
        None => Ok("model".into()),
    }
}

/// The operator.
pub fn handle(ctx: Context) -> Result<TaskResult, String> {
    let params: Params = ctx.params_as()?;
    if params.mode == Mode::Report {
        return report(&ctx, &params);
    }
    let models = raw_input(&ctx, &params.model_from, "model_from", "a model {weights, bias}");
    if let Ok(Value::Array(models)) = models {
        return publish_many(&ctx, &params, models);
    }
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
    let name = model_name(&params, &ctx)?;
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

/// One model of a mapped training, as `logreg` outputs it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct CustomerModel {
    weights: Vec<f64>,
    bias: f64,
    #[serde(default)]
    customer: Option<String>,
}

/// One customer's line of a per-customer `ml_evaluate` verdict.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CustomerVerdict {
    pub customer: String,
    #[serde(default)]
    pub skipped: bool,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub auc: Option<f64>,
    #[serde(default)]
    pub passed: Option<bool>,
    #[serde(default)]
    pub accuracy: Option<f64>,
    #[serde(default)]
    pub precision: Option<f64>,
    #[serde(default)]
    pub recall: Option<f64>,
    #[serde(default)]
    pub log_loss: Option<f64>,
}

/// The per-customer `ml_evaluate` verdict.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CustomersVerdict {
    pub customers: Vec<CustomerVerdict>,
    pub min_auc: f64,
    pub passed: bool,
    #[serde(default)]
    pub auc_min: Option<f64>,
    #[serde(default)]
    pub below_min: Vec<String>,
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub stats: Value,
}

/// Why a per-customer verdict did not pass, in one line.
fn why_not(v: &CustomersVerdict) -> String {
    let below: Vec<String> = v
        .customers
        .iter()
        .filter(|c| c.passed == Some(false))
        .map(|c| format!("{} (auc {:.2})", c.customer, c.auc.unwrap_or(f64::NAN)))
        .collect();
    if !below.is_empty() {
        format!("customers below min auc {:.2}: {}", v.min_auc, below.join(", "))
    } else if v.customers.iter().all(|c| c.skipped) {
        "no customer could be scored: every holdout has a single class".into()
    } else {
        "the evaluation says it did not pass".into()
    }
}

/// One card per customer.
fn publish_many(ctx: &Context, params: &Params, models: &[Value]) -> Result<TaskResult, String> {
    let (model_task, evaluation_task) = (&params.model_from, &params.evaluation_from);
    let what = "a per-customer ml_evaluate verdict {customers, min_auc, passed}";
    let verdict: CustomersVerdict = input(ctx, evaluation_task, "evaluation_from", what)?;
    if !verdict.passed {
        return Err(format!("evaluation did not pass: {}", why_not(&verdict)));
    }
    let name = model_name(params, ctx)?;
    let mut cards = Vec::new();
    let mut not_published = Vec::new();
    for (i, value) in models.iter().enumerate() {
        let model: CustomerModel = serde_json::from_value(value.clone())
            .map_err(|e| format!("inputs.{model_task}[{i}]: not a model {{weights, bias}}: {e}"))?;
        let scores = match &model.customer {
            Some(customer) => verdict.customers.iter().find(|c| &c.customer == customer).ok_or_else(|| {
                format!("inputs.{model_task}[{i}] is the model of customer {customer:?}, whom inputs.{evaluation_task} did not evaluate")
            })?,
            None => verdict.customers.get(i).ok_or_else(|| {
                format!("inputs.{model_task}[{i}] has no customer and inputs.{evaluation_task} evaluated only {} models", verdict.customers.len())
            })?,
        };
        let customer = &scores.customer;
        if scores.skipped {
            let reason = format!("not evaluated: {}", scores.reason.as_deref().unwrap_or("skipped by the evaluation"));
            eprintln!("{customer}: not published: {reason}");
            not_published.push(json!({ "customer": customer, "reason": reason }));
            continue;
        }
        let (Some(auc), Some(true)) = (scores.auc, scores.passed) else {
            return Err(format!(
                "customer {customer:?} did not pass its evaluation (auc {:?} < min {:.2})",
                scores.auc, verdict.min_auc
            ));
        };
        if model.weights.is_empty() {
            return Err(format!("inputs.{model_task}[{i}]: the model of {customer:?} has no weights"));
        }
        if let Some(features) = &verdict.features {
            if features.len() != model.weights.len() {
                return Err(format!(
                    "the model of {customer:?} has {} weights but evaluation describes {} features: were they made by the same run?",
                    model.weights.len(),
                    features.len()
                ));
            }
        }
        let model = Model { weights: model.weights, bias: model.bias };
        let id = model_id(&format!("{name}-{customer}"), &model);
        eprintln!("publishing {id}: {} weights, auc {auc:.4} (min {:.2})", model.weights.len(), verdict.min_auc);
        cards.push(json!({
            "model_id": id,
            "name": name,
            "customer": customer,
            "weights": model.weights,
            "bias": model.bias,
            "features": verdict.features,
            "stats": verdict.stats,
            "auc": auc,
            "scores": {
                "accuracy": scores.accuracy,
                "precision": scores.precision,
                "recall": scores.recall,
                "log_loss": scores.log_loss,
            },
            "published_at": ctx.logical_date,
            "source": { "dag_id": ctx.dag_id, "dag_version": ctx.dag_version, "run_id": ctx.run_id },
        }));
    }
    if cards.is_empty() {
        return Err("no model to publish: every customer's evaluation was skipped".into());
    }
    let count = cards.len();
    eprintln!("published {count} models, {} not published", not_published.len());
    let mut result = TaskResult::with_output(json!({
        "models": cards,
        "not_published": not_published,
        "published_at": ctx.logical_date,
        "source": { "dag_id": ctx.dag_id, "dag_version": ctx.dag_version, "run_id": ctx.run_id },
    }))
    .metric("models", count as f64)
    .metric("not_published", not_published.len() as f64);
    if let Some(min) = verdict.auc_min {
        result = result.metric("auc_min", min);
    }
    Ok(result)
}

/// Report mode: nothing published, the verdict recorded.
fn report(ctx: &Context, params: &Params) -> Result<TaskResult, String> {
    let task = &params.evaluation_from;
    let value = raw_input(ctx, task, "evaluation_from", "an ml_evaluate verdict")?;
    let output = if value.get("customers").is_some() {
        let v: CustomersVerdict = serde_json::from_value(value.clone())
            .map_err(|e| format!("inputs.{task}: not a per-customer ml_evaluate verdict: {e}"))?;
        let reason = if v.passed {
            "the evaluation passed; nothing was published by this step".to_string()
        } else {
            why_not(&v)
        };
        eprintln!("not published: {reason}");
        let skipped: Vec<&str> = v.customers.iter().filter(|c| c.skipped).map(|c| c.customer.as_str()).collect();
        json!({
            "published": false,
            "passed": v.passed,
            "reason": reason,
            "min_auc": v.min_auc,
            "auc_mean": value.get("auc_mean"),
            "auc_min": v.auc_min,
            "below_min": v.below_min,
            "skipped": skipped,
            "customers": v.customers.iter().map(|c| json!({
                "customer": c.customer, "auc": c.auc, "passed": c.passed, "reason": c.reason,
            })).collect::<Vec<_>>(),
        })
    } else {
        let v: Verdict = serde_json::from_value(value.clone())
            .map_err(|e| format!("inputs.{task}: not an ml_evaluate verdict {{auc, min_auc, passed}}: {e}"))?;
        let reason = if v.passed {
            "the evaluation passed; nothing was published by this step".to_string()
        } else {
            format!("auc {:.2} < min {:.2}", v.auc, v.min_auc)
        };
        eprintln!("not published: {reason}");
        json!({ "published": false, "passed": v.passed, "reason": reason, "auc": v.auc, "min_auc": v.min_auc })
    };
    Ok(TaskResult::with_output(output).metric("published", 0.0))
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

    fn mapped_ctx(evaluate: Value, params: Value) -> Context {
        serde_json::from_value(json!({
            "abi": 1,
            "dag_id": "ml_training",
            "run_id": "scheduled__2026-11-28T00:00:00Z",
            "logical_date": "2026-11-28T00:00:00Z",
            "params": params,
            "inputs": {
                "train": [
                    { "weights": [0.5, -1.25], "bias": 0.1, "loss": 0.3, "customer": "acme" },
                    { "weights": [0.7, -0.25], "bias": 0.2, "loss": 0.3, "customer": "globex" },
                    { "weights": [0.1, 0.1], "bias": 0.0, "loss": 0.6, "customer": "tiny" },
                ],
                "evaluate": evaluate,
            },
        }))
        .unwrap()
    }

    fn customers_verdict(globex_auc: f64, min_auc: f64) -> Value {
        let passed = globex_auc >= min_auc;
        json!({
            "customers": [
                { "customer": "globex", "skipped": false, "auc": globex_auc, "passed": passed, "accuracy": 0.9,
                  "precision": 0.5, "recall": 0.4, "log_loss": 0.3, "rows": 100, "positives": 9 },
                { "customer": "acme", "skipped": false, "auc": 0.91, "passed": true, "accuracy": 0.93,
                  "precision": 0.6, "recall": 0.5, "log_loss": 0.2, "rows": 100, "positives": 11 },
                { "customer": "tiny", "skipped": true, "reason": "the 4 holdout rows have no positive label, so AUC is undefined",
                  "rows": 4, "positives": 0 },
            ],
            "auc_mean": (globex_auc + 0.91) / 2.0, "auc_min": globex_auc.min(0.91), "evaluated": 2,
            "skipped": ["tiny"], "below_min": if passed { json!([]) } else { json!(["globex"]) },
            "threshold": 0.5, "min_auc": min_auc, "passed": passed,
            "features": ["a", "b"], "stats": { "mean": { "a": 1.0 } },
        })
    }

    #[test]
    fn one_card_per_customer() {
        let result = handle(mapped_ctx(customers_verdict(0.8, 0.75), json!({ "name": "fraud" }))).unwrap();
        let out = &result.output;
        let models = out["models"].as_array().unwrap();
        assert_eq!(models.len(), 2);
        // In the models' order, each with its own scores (matched by customer, not position).
        assert_eq!(models[0]["customer"], "acme");
        assert_eq!(models[0]["auc"], 0.91);
        assert_eq!(models[0]["scores"]["accuracy"], 0.93);
        assert_eq!(models[0]["weights"], json!([0.5, -1.25]));
        assert_eq!(models[1]["customer"], "globex");
        assert_eq!(models[1]["auc"], 0.8);
        let id = models[0]["model_id"].as_str().unwrap();
        assert!(id.starts_with("fraud-acme-") && id.len() == "fraud-acme-".len() + 16, "{id}");
        assert_ne!(models[0]["model_id"], models[1]["model_id"]);
        assert_eq!(models[1]["published_at"], "2026-11-28T00:00:00Z");
        assert_eq!(models[1]["features"], json!(["a", "b"]));
        // The skipped customer's model is not published, and the card says why.
        assert_eq!(out["not_published"][0]["customer"], "tiny");
        assert!(out["not_published"][0]["reason"].as_str().unwrap().starts_with("not evaluated: the 4 holdout rows"));
        assert_eq!(out["source"]["run_id"], "scheduled__2026-11-28T00:00:00Z");
        assert_eq!(result.metrics["models"], 2.0);
        assert_eq!(result.metrics["auc_min"], 0.8);
    }

    #[test]
    fn per_customer_models_that_did_not_pass_are_refused() {
        let err = handle(mapped_ctx(customers_verdict(0.61, 0.75), json!({}))).unwrap_err();
        assert_eq!(err, "evaluation did not pass: customers below min auc 0.75: globex (auc 0.61)");
        // A single model's verdict for a list of models is a clear error.
        let err = handle(mapped_ctx(verdict(0.9, true), json!({}))).unwrap_err();
        assert!(err.starts_with("inputs.evaluate: not a per-customer ml_evaluate verdict {customers, min_auc, passed}: missing field `customers`"), "{err}");
        // A model whose customer was not evaluated.
        let mut v = customers_verdict(0.8, 0.75);
        v["customers"].as_array_mut().unwrap().remove(1);
        let err = handle(mapped_ctx(v, json!({}))).unwrap_err();
        assert_eq!(err, "inputs.train[0] is the model of customer \"acme\", whom inputs.evaluate did not evaluate");
    }

    #[test]
    fn report_mode_records_why_and_succeeds() {
        let result = handle(mapped_ctx(customers_verdict(0.61, 0.75), json!({ "mode": "report" }))).unwrap();
        let out = &result.output;
        assert_eq!(out["published"], false);
        assert_eq!(out["passed"], false);
        assert_eq!(out["reason"], "customers below min auc 0.75: globex (auc 0.61)");
        assert_eq!(out["below_min"], json!(["globex"]));
        assert_eq!(out["skipped"], json!(["tiny"]));
        assert_eq!(out["customers"][0], json!({ "customer": "globex", "auc": 0.61, "passed": false, "reason": null }));
        assert_eq!(result.metrics["published"], 0.0);
        // One model.
        let result = handle(ctx(verdict(0.6149, false), json!({ "mode": "report" }))).unwrap();
        assert_eq!(result.output["reason"], "auc 0.61 < min 0.70");
        assert_eq!(result.output["auc"], 0.6149);
        // It needs no model input, only the verdict.
        let alone: Context = serde_json::from_value(json!({
            "abi": 1, "params": { "mode": "report" }, "inputs": { "evaluate": verdict(0.9, true) },
        }))
        .unwrap();
        assert_eq!(handle(alone).unwrap().output["passed"], true);
        let err = handle(ctx(verdict(0.9, true), json!({ "mode": "shout" }))).unwrap_err();
        assert!(err.starts_with("params: unknown variant `shout`, expected `publish` or `report`"), "{err}");
    }
}
