//! Logistic regression by batch gradient descent: a real compute operator, small enough to read.
//!
//! Data comes from, in this order: the mapped item (`map_item`, when the task is mapped and the item
//! has `x` and `y`, e.g. one element of `ml_features`' `per_customer`), `params.data`,
//! `params.synthetic = {rows, features, seed}` (made up, deterministic, with a hidden true weight
//! vector, so the trainer has something real to find), or the first upstream output that has `x`
//! and `y`. Output: `{weights, bias, loss}`, plus `customer` when the mapped item names one (so that
//! downstream steps can tell the models of a mapped training apart); metrics: loss, accuracy, epochs.

use sandflow_sdk::{json, Context, TaskResult, Value};
use serde::{Deserialize, Serialize};

/// Labelled rows: `x[i]` has `features` numbers, `y[i]` is 0 or 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dataset {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<f64>,
}

/// Training settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hyper {
    pub epochs: u32,
    pub learning_rate: f64,
    pub l2: f64,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper { epochs: 200, learning_rate: 0.5, l2: 0.0 }
    }
}

/// A trained model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub weights: Vec<f64>,
    pub bias: f64,
}

/// splitmix64: a tiny, good-enough deterministic generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of uniforms), mean 0, variance 1.
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// Rows whose labels follow a hidden linear rule with some noise.
pub fn synthetic(rows: usize, features: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let truth: Vec<f64> = (0..features).map(|_| rng.normal()).collect();
    let mut x = Vec::with_capacity(rows);
    let mut y = Vec::with_capacity(rows);
    for _ in 0..rows {
        let row: Vec<f64> = (0..features).map(|_| rng.normal()).collect();
        let z: f64 = row.iter().zip(&truth).map(|(a, b)| a * b).sum::<f64>() + 0.5 * rng.normal();
        y.push(if z > 0.0 { 1.0 } else { 0.0 });
        x.push(row);
    }
    Dataset { x, y }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Model {
    pub fn predict(&self, row: &[f64]) -> f64 {
        sigmoid(row.iter().zip(&self.weights).map(|(a, b)| a * b).sum::<f64>() + self.bias)
    }

    /// Mean log loss and accuracy on `data`.
    pub fn evaluate(&self, data: &Dataset) -> (f64, f64) {
        let n = data.y.len().max(1) as f64;
        let mut loss = 0.0;
        let mut right = 0.0;
        for (row, &label) in data.x.iter().zip(&data.y) {
            let p = self.predict(row).clamp(1e-12, 1.0 - 1e-12);
            loss -= label * p.ln() + (1.0 - label) * (1.0 - p).ln();
            if (p >= 0.5) == (label >= 0.5) {
                right += 1.0;
            }
        }
        (loss / n, right / n)
    }
}

/// Trains by full-batch gradient descent.
pub fn train(data: &Dataset, hyper: &Hyper) -> Result<Model, String> {
    let features = data.x.first().map_or(0, Vec::len);
    if data.x.len() != data.y.len() {
        return Err(format!("{} rows of x but {} labels", data.x.len(), data.y.len()));
    }
    if let Some(i) = data.x.iter().position(|row| row.len() != features) {
        return Err(format!("row {i} has {} features, row 0 has {features}", data.x[i].len()));
    }
    let n = data.y.len().max(1) as f64;
    let mut model = Model { weights: vec![0.0; features], bias: 0.0 };
    let mut grad = vec![0.0; features];
    for _ in 0..hyper.epochs {
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut grad_bias = 0.0;
        for (row, &label) in data.x.iter().zip(&data.y) {
            let err = model.predict(row) - label;
            for (g, v) in grad.iter_mut().zip(row) {
                *g += err * v;
            }
            grad_bias += err;
        }
        for (w, g) in model.weights.iter_mut().zip(&grad) {
            *w -= hyper.learning_rate * (g / n + hyper.l2 * *w);
        }
        model.bias -= hyper.learning_rate * grad_bias / n;
    }
    Ok(model)
}

#[derive(Deserialize)]
struct Synthetic {
    rows: usize,
    features: usize,
    #[serde(default)]
    seed: u64,
}

/// Where the data comes from, in the order documented above.
fn dataset(ctx: &Context) -> Result<Dataset, String> {
    if let Some(item) = &ctx.map_item {
        if item.get("x").is_some() && item.get("y").is_some() {
            let index = ctx.map_index.map_or_else(|| "?".to_string(), |i| i.to_string());
            return serde_json::from_value(item.clone()).map_err(|e| format!("map_item (map_index {index}): {e}"));
        }
    }
    if let Some(data) = ctx.params.get("data") {
        return serde_json::from_value(data.clone()).map_err(|e| format!("params.data: {e}"));
    }
    if let Some(spec) = ctx.params.get("synthetic") {
        let s: Synthetic = serde_json::from_value(spec.clone()).map_err(|e| format!("params.synthetic: {e}"))?;
        return Ok(synthetic(s.rows, s.features, s.seed));
    }
    for (task, output) in &ctx.inputs {
        if output.get("x").is_some() && output.get("y").is_some() {
            return serde_json::from_value(output.clone()).map_err(|e| format!("inputs.{task}: {e}"));
        }
    }
    Err("no data: give params.data, params.synthetic, or an upstream output with x and y".into())
}

/// The operator: trains and reports the model.
pub fn handle(ctx: Context) -> Result<TaskResult, String> {
    let data = dataset(&ctx)?;
    let hyper: Hyper = match ctx.params.get("hyper") {
        Some(h) => serde_json::from_value(h.clone()).map_err(|e| format!("params.hyper: {e}"))?,
        None => Hyper::default(),
    };
    let customer = ctx.map_item.as_ref().and_then(|item| item.get("customer")).filter(|c| !c.is_null()).cloned();
    if let Some(c) = &customer {
        let name = c.as_str().map_or_else(|| c.to_string(), str::to_string);
        eprintln!("customer {name} (map_index {})", ctx.map_index.map_or_else(|| "?".to_string(), |i| i.to_string()));
    }
    if data.y.is_empty() {
        return Err("no rows to train on: the data has empty x and y".into());
    }
    eprintln!("training on {} rows for {} epochs", data.y.len(), hyper.epochs);
    let model = train(&data, &hyper)?;
    let (loss, accuracy) = model.evaluate(&data);
    eprintln!("loss {loss:.4}, accuracy {accuracy:.3}");
    let mut output: Value = json!({ "weights": model.weights, "bias": model.bias, "loss": loss });
    if let Some(c) = customer {
        output["customer"] = c;
    }
    Ok(TaskResult::with_output(output)
        .metric("loss", loss)
        .metric("accuracy", accuracy)
        .metric("epochs", f64::from(hyper.epochs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_separable_rule() {
        let data = synthetic(400, 4, 7);
        let model = train(&data, &Hyper::default()).unwrap();
        let (loss, accuracy) = model.evaluate(&data);
        assert!(accuracy > 0.85, "accuracy {accuracy}");
        assert!(loss < 0.4, "loss {loss}");
    }

    #[test]
    fn ragged_rows_are_an_error() {
        let data = Dataset { x: vec![vec![1.0, 2.0], vec![1.0]], y: vec![0.0, 1.0] };
        assert_eq!(train(&data, &Hyper::default()).unwrap_err(), "row 1 has 1 features, row 0 has 2");
    }

    #[test]
    fn no_data_is_a_clear_error() {
        let ctx: Context = serde_json::from_str(r#"{"abi":1}"#).unwrap();
        assert!(handle(ctx).unwrap_err().starts_with("no data"));
    }

    #[test]
    fn a_mapped_item_with_x_and_y_comes_first() {
        let data = synthetic(200, 3, 5);
        let ctx: Context = serde_json::from_value(json!({
            "abi": 1,
            "map_index": 1,
            "map_item": { "customer": "acme", "x": data.x, "y": data.y, "holdout": { "x": [], "y": [] } },
            // Other sources are there too, and ignored: the upstream's global rows have 2 features.
            "inputs": { "features": { "x": [[1.0, 2.0]], "y": [1.0] } },
            "params": { "hyper": { "epochs": 100 } },
        }))
        .unwrap();
        let result = handle(ctx).unwrap();
        assert_eq!(result.output["weights"].as_array().unwrap().len(), 3);
        assert_eq!(result.output["customer"], "acme");
        assert!(result.metrics["accuracy"] > 0.8);
    }

    #[test]
    fn a_mapped_item_without_data_falls_back_and_names_no_customer() {
        let ctx: Context = serde_json::from_value(json!({
            "abi": 1, "map_index": 0, "map_item": 0.5,
            "params": { "synthetic": { "rows": 50, "features": 2 } },
        }))
        .unwrap();
        let result = handle(ctx).unwrap();
        assert_eq!(result.output["weights"].as_array().unwrap().len(), 2);
        assert!(result.output.get("customer").is_none());
        let bad: Context =
            serde_json::from_value(json!({ "abi": 1, "map_index": 3, "map_item": { "x": [[1.0]], "y": "no" } }))
                .unwrap();
        assert!(handle(bad).unwrap_err().starts_with("map_item (map_index 3): invalid type"));
    }

    #[test]
    fn synthetic_params_train_end_to_end() {
        let ctx: Context =
            serde_json::from_str(r#"{"abi":1,"params":{"synthetic":{"rows":200,"features":3,"seed":1}}}"#).unwrap();
        let result = handle(ctx).unwrap();
        assert_eq!(result.output["weights"].as_array().unwrap().len(), 3);
        assert!(result.metrics["accuracy"] > 0.8);
    }
}
