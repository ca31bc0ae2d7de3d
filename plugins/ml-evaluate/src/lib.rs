//! `ml_evaluate`: scores a trained model on the holdout rows that `ml_features` kept out of training,
//! and says whether it is good enough to publish. The fourth step of `dags/ml_training.toml`.
//!
//! Params (all optional):
//!
//! | param | default | meaning |
//! |---|---|---|
//! | `min_auc` | `0.7` | the quality gate: `passed` is `auc >= min_auc` |
//! | `threshold` | `0.5` | a score at or above it predicts fraud (for accuracy, precision, recall) |
//! | `model_from` | `"train"` | the upstream task whose output is the model `{weights, bias}` (as `logreg` outputs) |
//! | `data_from` | `"features"` | the upstream task whose output has `holdout: {x, y}` (as `ml_features` outputs) |
//!
//! `conf.min_auc`, when the run was triggered with it, overrides `params.min_auc`: a stricter (or
//! looser) gate for one run needs no DAG edit.
//!
//! Output: `{auc, accuracy, precision, recall, log_loss, rows, positives, threshold, min_auc, passed,
//! features, stats}`; `features` and `stats` are passed on from the features step so that publishing
//! can describe the model. The step succeeds whether or not the model passes: the gate is `passed`,
//! for a later step (`ml_publish`, or a branch) to act on.
//!
//! **One model per customer.** When the model input is a *list* (the outputs of a training task
//! mapped over `ml_features`' `per_customer`, in map order), model *i* is scored on the holdout rows of
//! its customer in `inputs.<data_from>.per_customer`: matched by the `customer` field when the model
//! and the per-customer entries both have one, else by position. Output:
//! `{customers: [{customer, skipped, rows, positives, auc, accuracy, precision, recall, log_loss,
//! passed} | {customer, skipped: true, reason, rows, positives}], auc_mean, auc_min, evaluated,
//! skipped: [names], below_min: [names], threshold, min_auc, passed, features, stats}`. A customer
//! whose holdout has a single class (or no rows) has no AUC: it is skipped, listed in `skipped`, and
//! left out of `auc_mean`, `auc_min` and the gate. `passed` is true when at least one customer was
//! scored and every scored customer has `auc >= min_auc`. `features` are the per-customer columns
//! (`per_customer_features`).

use sandflow_sdk::{json, Context, TaskResult, Value};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default = "default_min_auc")]
    pub min_auc: f64,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    #[serde(default = "default_model_from")]
    pub model_from: String,
    #[serde(default = "default_data_from")]
    pub data_from: String,
}

fn default_min_auc() -> f64 {
    0.7
}
fn default_threshold() -> f64 {
    0.5
}
fn default_model_from() -> String {
    "train".into()
}
fn default_data_from() -> String {
    "features".into()
}

/// A linear model, as `logreg` outputs it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Model {
    pub weights: Vec<f64>,
    pub bias: f64,
}

impl Model {
    /// The predicted probability of the positive class.
    pub fn predict(&self, row: &[f64]) -> f64 {
        let z: f64 = row.iter().zip(&self.weights).map(|(a, b)| a * b).sum::<f64>() + self.bias;
        1.0 / (1.0 + (-z).exp())
    }
}

/// Labelled rows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Holdout {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<f64>,
}

/// The scores of a model on labelled rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub auc: f64,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub log_loss: f64,
    pub rows: usize,
    pub positives: usize,
}

/// The area under the ROC curve, by ranks (Mann–Whitney U): the probability that a random positive
/// scores above a random negative, ties counting half. `None` unless both classes are present.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Scores `model` on `data`.
pub fn score(model: &Model, data: &Holdout, threshold: f64) -> Result<Scores, String> {
    if data.x.len() != data.y.len() {
        return Err(format!("the holdout has {} rows of x but {} labels", data.x.len(), data.y.len()));
    }
    if data.y.is_empty() {
        return Err("the holdout is empty: give the features step a holdout share above 0 (params.holdout)".into());
    }
    if let Some(i) = data.x.iter().position(|row| row.len() != model.weights.len()) {
        return Err(format!(
            "holdout row {i} has {} features but the model has {} weights: were they trained on these features?",
            data.x[i].len(),
            model.weights.len()
        ));
    }
    if let Some(i) = data.y.iter().position(|&l| l != 0.0 && l != 1.0) {
        return Err(format!("holdout label {i} is {}, not 0 or 1", data.y[i]));
    }
    let probs: Vec<f64> = data.x.iter().map(|row| model.predict(row)).collect();
    let labels: Vec<bool> = data.y.iter().map(|&l| l == 1.0).collect();
    let positives = labels.iter().filter(|&&l| l).count();
    let auc = auc(&probs, &labels).ok_or_else(|| {
        let class = if positives == 0 { "positive" } else { "negative" };
        format!(
            "the holdout's {} rows have no {class} label, so AUC is undefined: hold out more rows or generate more events",
            labels.len()
        )
    })?;
    let (mut tp, mut fp, mut tn, mut fne) = (0usize, 0usize, 0usize, 0usize);
    let mut log_loss = 0.0;
    for (&p, &label) in probs.iter().zip(&labels) {
        match (p >= threshold, label) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fne += 1,
        }
        let p = p.clamp(1e-12, 1.0 - 1e-12);
        log_loss -= if label { p.ln() } else { (1.0 - p).ln() };
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Ok(Scores {
        auc,
        accuracy: ratio(tp + tn, labels.len()),
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fne),
        log_loss: log_loss / labels.len() as f64,
        rows: labels.len(),
        positives,
    })
}

fn input<'a>(ctx: &'a Context, task: &str, param: &str, what: &str) -> Result<&'a Value, String> {
    ctx.inputs.get(task).ok_or_else(|| {
        let known: Vec<&str> = ctx.inputs.keys().map(String::as_str).collect();
        let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
        format!("no input from upstream task `{task}`, which should give {what} (inputs: {known}; set params.{param})")
    })
}

/// The operator.
pub fn handle(ctx: Context) -> Result<TaskResult, String> {
    let mut params: Params = ctx.params_as()?;
    if !(0.0..=1.0).contains(&params.min_auc) {
        return Err(format!("params.min_auc must be between 0 and 1, got {}", params.min_auc));
    }
    if let Some(value) = ctx.conf.get("min_auc") {
        match value.as_f64() {
            Some(min) if (0.0..=1.0).contains(&min) => {
                eprintln!("conf.min_auc {min} overrides params.min_auc {}", params.min_auc);
                params.min_auc = min;
            }
            _ => return Err(format!("conf.min_auc must be a number between 0 and 1, got {value}")),
        }
    }
    let model_task = &params.model_from;
    let model = input(&ctx, model_task, "model_from", "the model {weights, bias}")?;
    let features = input(&ctx, &params.data_from, "data_from", "the holdout rows")?;
    match model {
        Value::Array(models) => evaluate_many(&params, models, features),
        model => evaluate_one(&params, model, features),
    }
}

/// One model, scored on the global holdout.
fn evaluate_one(params: &Params, model: &Value, features: &Value) -> Result<TaskResult, String> {
    let model_task = &params.model_from;
    let model: Model = serde_json::from_value(model.clone())
        .map_err(|e| format!("inputs.{model_task}: not a model {{weights, bias}}: {e}"))?;
    let data_task = &params.data_from;
    let holdout = features
        .get("holdout")
        .ok_or_else(|| format!("inputs.{data_task} has no `holdout`: is `{data_task}` an ml_features task?"))?;
    let holdout: Holdout =
        serde_json::from_value(holdout.clone()).map_err(|e| format!("inputs.{data_task}.holdout: {e}"))?;
    let s = score(&model, &holdout, params.threshold)?;
    let passed = s.auc >= params.min_auc;
    eprintln!(
        "holdout: {} rows, {} positive; auc {:.4}, accuracy {:.4}, precision {:.4}, recall {:.4}, log loss {:.4}",
        s.rows, s.positives, s.auc, s.accuracy, s.precision, s.recall, s.log_loss
    );
    eprintln!(
        "gate: auc {:.4} {} min {:.2}: {}",
        s.auc,
        if passed { ">=" } else { "<" },
        params.min_auc,
        if passed { "passed" } else { "NOT passed" }
    );
    let output = json!({
        "auc": s.auc,
        "accuracy": s.accuracy,
        "precision": s.precision,
        "recall": s.recall,
        "log_loss": s.log_loss,
        "rows": s.rows,
        "positives": s.positives,
        "threshold": params.threshold,
        "min_auc": params.min_auc,
        "passed": passed,
        "features": features.get("features").cloned().unwrap_or(Value::Null),
        "stats": features.get("stats").cloned().unwrap_or(Value::Null),
    });
    Ok(TaskResult::with_output(output)
        .metric("auc", s.auc)
        .metric("accuracy", s.accuracy)
        .metric("precision", s.precision)
        .metric("recall", s.recall)
        .metric("log_loss", s.log_loss)
        .metric("rows", s.rows as f64)
        .metric("passed", f64::from(u8::from(passed))))
}

/// One model of a mapped training, as `logreg` outputs it with a `map_item` that names the customer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct CustomerModel {
    weights: Vec<f64>,
    bias: f64,
    #[serde(default)]
    customer: Option<String>,
}

/// The customer of a `per_customer` entry, when it names one.
fn customer_of(entry: &Value) -> Option<&str> {
    entry.get("customer").and_then(Value::as_str)
}

/// One model per customer: model *i* on its customer's holdout.
fn evaluate_many(params: &Params, models: &[Value], features: &Value) -> Result<TaskResult, String> {
    let (model_task, data_task) = (&params.model_from, &params.data_from);
    if models.is_empty() {
        return Err(format!("inputs.{model_task} is an empty list: no model to evaluate"));
    }
    let per_customer = features
        .get("per_customer")
        .ok_or_else(|| {
            format!(
                "inputs.{model_task} is a list of {} models (a mapped training), but inputs.{data_task} has no \
                 `per_customer` rows to score them on: is `{data_task}` an ml_features task with per_customer on?",
                models.len()
            )
        })?
        .as_array()
        .ok_or_else(|| format!("inputs.{data_task}.per_customer: expected a list"))?;
    if models.len() != per_customer.len() {
        eprintln!(
            "note: {} models but {} per-customer entries in inputs.{data_task}",
            models.len(),
            per_customer.len()
        );
    }
    let mut rows = Vec::with_capacity(models.len());
    let mut result = TaskResult::default();
    let (mut scored, mut skipped, mut below) = (Vec::new(), Vec::new(), Vec::new());
    for (i, value) in models.iter().enumerate() {
        let model: CustomerModel = serde_json::from_value(value.clone())
            .map_err(|e| format!("inputs.{model_task}[{i}]: not a model {{weights, bias}}: {e}"))?;
        // By customer when both sides name one, else by position.
        let by_name = model.customer.as_deref().filter(|_| per_customer.iter().any(|e| customer_of(e).is_some()));
        let (j, entry) = match by_name {
            Some(name) => per_customer.iter().enumerate().find(|(_, e)| customer_of(e) == Some(name)).ok_or_else(|| {
                format!("inputs.{model_task}[{i}] is the model of customer {name:?}, who has no entry in inputs.{data_task}.per_customer")
            })?,
            None => (i, per_customer.get(i).ok_or_else(|| {
                format!(
                    "inputs.{model_task}[{i}] has no customer and inputs.{data_task}.per_customer has only {} entries",
                    per_customer.len()
                )
            })?),
        };
        let customer = model
            .customer
            .clone()
            .or_else(|| customer_of(entry).map(str::to_string))
            .unwrap_or_else(|| format!("#{i}"));
        let place = format!("inputs.{data_task}.per_customer[{j}].holdout");
        let holdout: Holdout = serde_json::from_value(
            entry
                .get("holdout")
                .ok_or_else(|| format!("inputs.{data_task}.per_customer[{j}] has no `holdout`"))?
                .clone(),
        )
        .map_err(|e| format!("{place}: {e}"))?;
        let model = Model { weights: model.weights, bias: model.bias };
        let positives = holdout.y.iter().filter(|&&l| l == 1.0).count();
        let single_class = holdout.y.is_empty() || positives == 0 || positives == holdout.y.len();
        if single_class && holdout.x.len() == holdout.y.len() {
            let reason = if holdout.y.is_empty() {
                "no holdout rows".to_string()
            } else {
                let class = if positives == 0 { "positive" } else { "negative" };
                format!("the {} holdout rows have no {class} label, so AUC is undefined", holdout.y.len())
            };
            eprintln!("{customer}: skipped: {reason}");
            skipped.push(customer.clone());
            rows.push(json!({
                "customer": customer, "skipped": true, "reason": reason, "rows": holdout.y.len(), "positives": positives,
            }));
            continue;
        }
        let s =
            score(&model, &holdout, params.threshold).map_err(|e| format!("customer {customer:?} ({place}): {e}"))?;
        let passed = s.auc >= params.min_auc;
        eprintln!(
            "{customer}: {} rows, {} positive; auc {:.4}{}, accuracy {:.4}, precision {:.4}, recall {:.4}, log loss {:.4}",
            s.rows,
            s.positives,
            s.auc,
            if passed { "" } else { " (below min)" },
            s.accuracy,
            s.precision,
            s.recall,
            s.log_loss
        );
        if !passed {
            below.push(customer.clone());
        }
        result = result.metric(format!("auc.{customer}"), s.auc);
        scored.push(s.auc);
        rows.push(json!({
            "customer": customer,
            "skipped": false,
            "rows": s.rows,
            "positives": s.positives,
            "auc": s.auc,
            "accuracy": s.accuracy,
            "precision": s.precision,
            "recall": s.recall,
            "log_loss": s.log_loss,
            "passed": passed,
        }));
    }
    let auc_mean = (!scored.is_empty()).then(|| scored.iter().sum::<f64>() / scored.len() as f64);
    let auc_min = scored.iter().copied().reduce(f64::min);
    let passed = !scored.is_empty() && below.is_empty();
    match (auc_mean, auc_min) {
        (Some(mean), Some(min)) => eprintln!(
            "gate: {} of {} customers scored, auc mean {mean:.4}, min {min:.4} {} min_auc {:.2}: {}{}",
            scored.len(),
            models.len(),
            if passed { ">=" } else { "<" },
            params.min_auc,
            if passed { "passed" } else { "NOT passed" },
            if below.is_empty() { String::new() } else { format!(" (below: {})", below.join(", ")) }
        ),
        _ => eprintln!("gate: no customer could be scored (every holdout has a single class): NOT passed"),
    }
    let names = features
        .get("per_customer_features")
        .cloned()
        .or_else(|| {
            // An older features step: its names without the customer one-hot columns.
            let names = features.get("features")?.as_array()?;
            Some(Value::Array(
                names.iter().filter(|n| !n.as_str().is_some_and(|n| n.starts_with("customer="))).cloned().collect(),
            ))
        })
        .unwrap_or(Value::Null);
    let output = json!({
        "customers": rows,
        "auc_mean": auc_mean,
        "auc_min": auc_min,
        "evaluated": scored.len(),
        "skipped": skipped,
        "below_min": below,
        "threshold": params.threshold,
        "min_auc": params.min_auc,
        "passed": passed,
        "features": names,
        "stats": features.get("stats").cloned().unwrap_or(Value::Null),
    });
    result.output = output;
    if let (Some(mean), Some(min)) = (auc_mean, auc_min) {
        result = result.metric("auc_mean", mean).metric("auc_min", min);
    }
    Ok(result
        .metric("customers", models.len() as f64)
        .metric("skipped", skipped.len() as f64)
        .metric("passed", f64::from(u8::from(passed))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn auc_by_ranks() {
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true]), Some(0.5));
        // Pairs (pos, neg): (0.4 vs 0.1) win, (0.4 vs 0.6) lose, (0.8 vs both) win: 3 of 4.
        assert_eq!(auc(&[0.1, 0.4, 0.6, 0.8], &[false, true, false, true]), Some(0.75));
        // A tie between a positive and a negative counts half: (0.5 = 0.5) half, (0.5 > 0.2) win.
        assert_eq!(auc(&[0.2, 0.5, 0.5], &[false, false, true]), Some(0.75));
        assert_eq!(auc(&[0.2, 0.5], &[true, true]), None);
    }

    fn ctx(model: Value, holdout: Value, params: Value) -> Context {
        serde_json::from_value(json!({
            "abi": 1,
            "params": params,
            "inputs": {
                "train": model,
                "features": { "features": ["a", "b"], "holdout": holdout, "stats": { "mean": { "a": 1.0 } } },
            },
        }))
        .unwrap()
    }

    #[test]
    fn scores_a_hand_made_model() {
        // Score = sigmoid(2a - b): rows ordered by a - b/2.
        let model = json!({ "weights": [2.0, -1.0], "bias": 0.0, "loss": 0.3 });
        let holdout = json!({
            "x": [[1.0, 0.0], [0.5, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.2, 0.0]],
            "y": [1, 1, 0, 0, 0],
        });
        let result = handle(ctx(model, holdout, json!({}))).unwrap();
        let out = &result.output;
        // Positives score 0.88 and 0.73; negatives 0.12, 0.27, 0.60: every pair right.
        assert_eq!(out["auc"], 1.0);
        // At 0.5: predicted positive are the two positives and the 0.60 negative.
        assert!(close(out["precision"].as_f64().unwrap(), 2.0 / 3.0));
        assert_eq!(out["recall"], 1.0);
        assert!(close(out["accuracy"].as_f64().unwrap(), 0.8));
        let p = |z: f64| 1.0 / (1.0 + (-z).exp());
        let expected =
            -(p(2.0).ln() + p(1.0).ln() + (1.0 - p(-2.0)).ln() + (1.0 - p(-1.0)).ln() + (1.0 - p(0.4)).ln()) / 5.0;
        assert!(close(out["log_loss"].as_f64().unwrap(), expected));
        assert_eq!(out["passed"], true);
        assert_eq!(out["features"], json!(["a", "b"]));
        assert_eq!(out["stats"]["mean"]["a"], 1.0);
        assert_eq!(result.metrics["passed"], 1.0);
        assert_eq!(result.metrics["auc"], 1.0);
    }

    #[test]
    fn a_weak_model_fails_the_gate_but_the_step_succeeds() {
        let model = json!({ "weights": [1.0, 0.0], "bias": 0.0 });
        let holdout = json!({ "x": [[0.1, 0.0], [0.4, 0.0], [0.6, 0.0], [0.8, 0.0]], "y": [0, 1, 0, 1] });
        let result = handle(ctx(model.clone(), holdout.clone(), json!({ "min_auc": 0.8 }))).unwrap();
        assert_eq!(result.output["auc"], 0.75);
        assert_eq!(result.output["passed"], false);
        let result = handle(ctx(model, holdout, json!({ "min_auc": 0.75 }))).unwrap();
        assert_eq!(result.output["passed"], true);
    }

    #[test]
    fn a_trained_model_passes_end_to_end() {
        // Rows like the features step makes (z-score, flag, one-hot), labels from a noisy linear rule,
        // a model fitted by a few steps of gradient descent (as logreg does), scored on fresh rows.
        let mut state = 7u64;
        let mut unit = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut rows = |n: usize| {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for _ in 0..n {
                let z = (0..12).map(|_| unit()).sum::<f64>() - 6.0;
                let flag = f64::from(u8::from(unit() < 0.3));
                let card = f64::from(u8::from(unit() < 0.7));
                let logit = 1.5 * z + 1.2 * flag - 0.8 * card - 1.5;
                y.push(f64::from(u8::from(unit() < 1.0 / (1.0 + (-logit).exp()))));
                x.push(vec![z, flag, card, 1.0 - card]);
            }
            (x, y)
        };
        let (train_x, train_y) = rows(800);
        let (hold_x, hold_y) = rows(200);
        let mut model = Model { weights: vec![0.0; 4], bias: 0.0 };
        for _ in 0..300 {
            let mut grad = [0.0; 4];
            let mut grad_bias = 0.0;
            for (row, label) in train_x.iter().zip(&train_y) {
                let err = model.predict(row) - label;
                grad.iter_mut().zip(row).for_each(|(g, v)| *g += err * v);
                grad_bias += err;
            }
            model.weights.iter_mut().zip(grad).for_each(|(w, g)| *w -= 0.5 * g / 800.0);
            model.bias -= 0.5 * grad_bias / 800.0;
        }
        let model = json!({ "weights": model.weights, "bias": model.bias });
        let result = handle(ctx(model, json!({ "x": hold_x, "y": hold_y }), json!({ "min_auc": 0.75 }))).unwrap();
        let auc = result.output["auc"].as_f64().unwrap();
        assert!(auc > 0.8, "auc {auc}");
        assert_eq!(result.output["passed"], true);
        assert!(result.output["log_loss"].as_f64().unwrap() < 0.6);
    }

    #[test]
    fn clear_errors() {
        let model = json!({ "weights": [1.0, 2.0], "bias": 0.0 });
        let holdout = json!({ "x": [[1.0, 0.0], [0.0, 1.0]], "y": [1, 0] });
        let err = |model: Value, holdout: Value, params: Value| handle(ctx(model, holdout, params)).unwrap_err();
        assert_eq!(
            err(json!({ "weights": [1.0] , "bias": 0.0 }), holdout.clone(), json!({})),
            "holdout row 0 has 2 features but the model has 1 weights: were they trained on these features?"
        );
        assert!(err(json!({ "bias": 0.0 }), holdout.clone(), json!({}))
            .starts_with("inputs.train: not a model {weights, bias}: missing field `weights`"));
        assert_eq!(
            err(model.clone(), json!({ "x": [[1.0, 0.0]], "y": [1] }), json!({})),
            "the holdout's 1 rows have no negative label, so AUC is undefined: hold out more rows or generate more events"
        );
        assert!(err(model.clone(), json!({ "x": [], "y": [] }), json!({})).starts_with("the holdout is empty"));
        assert_eq!(
            err(model.clone(), holdout.clone(), json!({ "model_from": "fit" })),
            "no input from upstream task `fit`, which should give the model {weights, bias} (inputs: features, train; set params.model_from)"
        );
        assert!(err(model.clone(), holdout.clone(), json!({ "min_auc": 7 }))
            .starts_with("params.min_auc must be between 0 and 1"));
        assert!(err(model.clone(), holdout.clone(), json!({ "min_AUC": 0.7 }))
            .starts_with("params: unknown field `min_AUC`"));
        let no_holdout: Context = serde_json::from_value(json!({
            "abi": 1, "inputs": { "train": model, "features": { "x": [], "y": [] } },
        }))
        .unwrap();
        assert_eq!(
            handle(no_holdout).unwrap_err(),
            "inputs.features has no `holdout`: is `features` an ml_features task?"
        );
    }

    fn mapped_ctx(models: Value, per_customer: Value, params: Value) -> Context {
        serde_json::from_value(json!({
            "abi": 1,
            "params": params,
            "inputs": {
                "train": models,
                "features": {
                    "features": ["a", "b", "customer=acme", "customer=globex"],
                    "per_customer_features": ["a", "b"],
                    "stats": { "mean": { "a": 1.0 } },
                    "per_customer": per_customer,
                },
            },
        }))
        .unwrap()
    }

    fn entry(customer: &str, x: Value, y: Value) -> Value {
        json!({ "customer": customer, "x": [[0.0, 0.0]], "y": [0], "holdout": { "x": x, "y": y } })
    }

    #[test]
    fn one_model_per_customer_matched_by_name() {
        // acme's rows are ordered by a: model [1, 0] ranks them perfectly, model [-1, 0] backwards.
        let per_customer = json!([
            entry("acme", json!([[0.1, 0.0], [0.4, 0.0], [0.6, 0.0], [0.8, 0.0]]), json!([0, 0, 1, 1])),
            entry("globex", json!([[0.1, 0.0], [0.4, 0.0], [0.6, 0.0], [0.8, 0.0]]), json!([0, 1, 0, 1])),
        ]);
        // The models in the other order: matched by their `customer`, not their position.
        let models = json!([
            { "weights": [1.0, 0.0], "bias": 0.0, "customer": "globex" },
            { "weights": [1.0, 0.0], "bias": 0.0, "customer": "acme" },
        ]);
        let result = handle(mapped_ctx(models, per_customer, json!({ "min_auc": 0.7 }))).unwrap();
        let out = &result.output;
        assert_eq!(out["customers"][0]["customer"], "globex");
        assert_eq!(out["customers"][0]["auc"], 0.75);
        assert_eq!(out["customers"][1]["customer"], "acme");
        assert_eq!(out["customers"][1]["auc"], 1.0);
        assert_eq!(out["customers"][1]["passed"], true);
        assert!(close(out["auc_mean"].as_f64().unwrap(), 0.875));
        assert_eq!(out["auc_min"], 0.75);
        assert_eq!(out["passed"], true);
        assert_eq!(out["evaluated"], 2);
        assert_eq!(out["features"], json!(["a", "b"]));
        assert_eq!(out["stats"]["mean"]["a"], 1.0);
        assert_eq!(result.metrics["auc.acme"], 1.0);
        assert_eq!(result.metrics["auc_min"], 0.75);
        assert_eq!(result.metrics["passed"], 1.0);
        // One customer below min_auc fails the gate for all, and is named.
        let result = handle(mapped_ctx(
            json!([
                { "weights": [1.0, 0.0], "bias": 0.0, "customer": "acme" },
                { "weights": [1.0, 0.0], "bias": 0.0, "customer": "globex" },
            ]),
            json!([
                entry("acme", json!([[0.1, 0.0], [0.8, 0.0]]), json!([0, 1])),
                entry("globex", json!([[0.1, 0.0], [0.4, 0.0], [0.6, 0.0], [0.8, 0.0]]), json!([0, 1, 0, 1])),
            ]),
            json!({ "min_auc": 0.8 }),
        ))
        .unwrap();
        assert_eq!(result.output["passed"], false);
        assert_eq!(result.output["below_min"], json!(["globex"]));
        assert_eq!(result.output["customers"][1]["passed"], false);
    }

    #[test]
    fn conf_min_auc_overrides_the_param() {
        let per_customer =
            json!([entry("acme", json!([[0.1, 0.0], [0.4, 0.0], [0.6, 0.0], [0.8, 0.0]]), json!([0, 1, 0, 1]))]);
        let models = json!([{ "weights": [1.0, 0.0], "bias": 0.0, "customer": "acme" }]);
        let mut c = mapped_ctx(models, per_customer, json!({ "min_auc": 0.7 }));
        assert_eq!(handle(c.clone()).unwrap().output["passed"], true);
        c.conf.insert("min_auc".into(), json!(0.99));
        let out = handle(c.clone()).unwrap().output;
        assert_eq!((out["passed"].clone(), out["min_auc"].clone()), (json!(false), json!(0.99)));
        c.conf.insert("min_auc".into(), json!("high"));
        assert_eq!(handle(c).unwrap_err(), "conf.min_auc must be a number between 0 and 1, got \"high\"");
    }

    #[test]
    fn by_position_when_the_models_name_no_customer() {
        let per_customer = json!([
            { "x": [], "y": [], "holdout": { "x": [[0.1, 0.0], [0.8, 0.0]], "y": [0, 1] } },
            { "x": [], "y": [], "holdout": { "x": [[0.1, 0.0], [0.8, 0.0]], "y": [1, 0] } },
        ]);
        let models = json!([{ "weights": [1.0, 0.0], "bias": 0.0 }, { "weights": [1.0, 0.0], "bias": 0.0 }]);
        let result = handle(mapped_ctx(models, per_customer, json!({}))).unwrap();
        assert_eq!(result.output["customers"][0]["customer"], "#0");
        assert_eq!(result.output["customers"][0]["auc"], 1.0);
        assert_eq!(result.output["customers"][1]["auc"], 0.0);
        assert_eq!(result.output["below_min"], json!(["#1"]));
        // Models without names, entries with names: the entry names the customer.
        let per_customer = json!([entry("acme", json!([[0.1, 0.0], [0.8, 0.0]]), json!([0, 1]))]);
        let result =
            handle(mapped_ctx(json!([{ "weights": [1.0, 0.0], "bias": 0.0 }]), per_customer, json!({}))).unwrap();
        assert_eq!(result.output["customers"][0]["customer"], "acme");
    }

    #[test]
    fn a_single_class_holdout_is_skipped_and_said_so() {
        let per_customer = json!([
            entry("acme", json!([[0.1, 0.0], [0.8, 0.0]]), json!([0, 1])),
            entry("tiny", json!([[0.1, 0.0], [0.8, 0.0]]), json!([0, 0])),
            entry("empty", json!([]), json!([])),
        ]);
        let models = json!([
            { "weights": [1.0, 0.0], "bias": 0.0, "customer": "acme" },
            { "weights": [1.0, 0.0], "bias": 0.0, "customer": "tiny" },
            { "weights": [1.0, 0.0], "bias": 0.0, "customer": "empty" },
        ]);
        let result = handle(mapped_ctx(models, per_customer, json!({}))).unwrap();
        let out = &result.output;
        assert_eq!(out["passed"], true);
        assert_eq!(out["evaluated"], 1);
        assert_eq!(out["skipped"], json!(["tiny", "empty"]));
        assert_eq!(out["customers"][1]["skipped"], true);
        assert_eq!(out["customers"][1]["reason"], "the 2 holdout rows have no positive label, so AUC is undefined");
        assert_eq!(out["customers"][2]["reason"], "no holdout rows");
        assert!(out["customers"][1].get("auc").is_none());
        assert_eq!(result.metrics["skipped"], 2.0);
        // Nobody scored: not passed.
        let only_tiny = json!([entry("tiny", json!([[0.1, 0.0]]), json!([1]))]);
        let result = handle(mapped_ctx(
            json!([{ "weights": [1.0, 0.0], "bias": 0.0, "customer": "tiny" }]),
            only_tiny,
            json!({}),
        ))
        .unwrap();
        assert_eq!(result.output["passed"], false);
        assert_eq!(result.output["auc_min"], Value::Null);
    }

    #[test]
    fn mapped_clear_errors() {
        let model = json!({ "weights": [1.0, 0.0], "bias": 0.0, "customer": "hooli" });
        let per_customer = json!([entry("acme", json!([[0.1, 0.0], [0.8, 0.0]]), json!([0, 1]))]);
        let err = |models: Value, per: Value| handle(mapped_ctx(models, per, json!({}))).unwrap_err();
        assert_eq!(
            err(json!([model]), per_customer.clone()),
            "inputs.train[0] is the model of customer \"hooli\", who has no entry in inputs.features.per_customer"
        );
        assert_eq!(err(json!([]), per_customer.clone()), "inputs.train is an empty list: no model to evaluate");
        assert!(err(json!([{ "bias": 0.0 }]), per_customer.clone())
            .starts_with("inputs.train[0]: not a model {weights, bias}: missing field `weights`"));
        assert_eq!(
            err(json!([{ "weights": [1.0], "bias": 0.0, "customer": "acme" }]), per_customer),
            "customer \"acme\" (inputs.features.per_customer[0].holdout): holdout row 0 has 2 features but the model has 1 weights: were they trained on these features?"
        );
        // A list of models but a features step without per_customer rows.
        let ctx: Context = serde_json::from_value(json!({
            "abi": 1,
            "inputs": { "train": [{ "weights": [1.0], "bias": 0.0 }], "features": { "holdout": { "x": [], "y": [] } } },
        }))
        .unwrap();
        assert!(handle(ctx).unwrap_err().contains("has no `per_customer` rows to score them on"));
    }
}
