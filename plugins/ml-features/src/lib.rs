//! `ml_features`: turns the events of `ml_generate` into standardised feature rows and splits them
//! into a training set and a holdout set, the second step of `dags/ml_training.toml`.
//!
//! Params (all optional):
//!
//! | param | default | meaning |
//! |---|---|---|
//! | `from` | the only upstream task | the upstream task whose output has the `events` |
//! | `holdout` | `0.2` | the share of events kept out of training, for evaluation (0 ≤ holdout < 1) |
//! | `split_seed` | `0` | changes which events are held out |
//! | `one_hot_customers` | `true` up to 16 customers | add a 0/1 column per customer |
//! | `per_customer` | `true` | also output the rows grouped by customer (`per_customer`, below); `false` leaves it empty and halves the output |
//!
//! Features, in order: `log_amount`, `log_account_age`, `n_items` (z-scores: `(v - mean) / std`, with
//! mean and std measured on the training rows only), `night` (hour < 6) and `is_foreign` (0/1),
//! `payment=<method>` (one-hot), then `customer=<name>` (one-hot, when enabled).
//!
//! The split is by a hash of each event's `id`, so an event is on the same side in every run, whatever
//! else changed. Output: `{features: [names], x, y, holdout: {x, y}, stats: {mean, std}, split,
//! per_customer_features: [names], per_customer: [{customer, x, y, holdout: {x, y}}]}`.
//! `x` and `y` at the top level are the **training** rows: the form `logreg` reads from an upstream
//! task. `stats` holds the mean and std of each z-scored feature, which serving needs.
//!
//! `per_customer` holds the same rows again, grouped by customer, for training one model per customer
//! (a task mapped over `inputs.features.per_customer` gets one element each as its `map_item`, which
//! `logreg` trains on). Those rows have the same features, standardised with the same `stats`, except
//! the `customer=<name>` columns, which are constant within one customer and so left out:
//! `per_customer_features` names their columns. Customers are in the order of `customers` upstream;
//! a customer with no events has no element.

use std::collections::BTreeMap;

use sandflow_sdk::{json, Context, Map, TaskResult, Value};
use serde::Deserialize;

/// Customers up to this many get a one-hot column each unless `one_hot_customers` says otherwise.
pub const ONE_HOT_CUSTOMERS_UP_TO: usize = 16;

/// The host's default limit on a result.
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// The z-scored features, in order.
pub const NUMERIC: [&str; 3] = ["log_amount", "log_account_age", "n_items"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    #[serde(default)]
    pub split_seed: u64,
    #[serde(default)]
    pub one_hot_customers: Option<bool>,
    #[serde(default = "yes")]
    pub per_customer: bool,
}

fn yes() -> bool {
    true
}

fn default_holdout() -> f64 {
    0.2
}

impl Default for Params {
    fn default() -> Self {
        Params { from: None, holdout: default_holdout(), split_seed: 0, one_hot_customers: None, per_customer: true }
    }
}

/// The fields of one event that the features use.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub customer: String,
    pub amount: f64,
    pub hour: f64,
    pub account_age_days: f64,
    pub n_items: f64,
    pub is_foreign: bool,
    pub payment: String,
    pub fraud: bool,
}

/// Labelled rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Split {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<f64>,
}

impl Split {
    fn positives(&self) -> usize {
        self.y.iter().filter(|&&v| v == 1.0).count()
    }
    fn to_json(&self) -> Value {
        json!({ "x": self.x, "y": self.y })
    }
}

/// One customer's rows, without the customer one-hot columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerSplit {
    pub customer: String,
    pub train: Split,
    pub holdout: Split,
}

impl CustomerSplit {
    fn to_json(&self) -> Value {
        json!({ "customer": self.customer, "x": self.train.x, "y": self.train.y, "holdout": self.holdout.to_json() })
    }
}

/// Everything the step computes.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub names: Vec<String>,
    pub train: Split,
    pub holdout: Split,
    /// The columns of the per-customer rows: `names` without the `customer=` columns.
    pub customer_names: Vec<String>,
    /// The rows of each customer that has events, in customer order.
    pub per_customer: Vec<CustomerSplit>,
    /// Mean and std of each z-scored feature, measured on the training rows.
    pub mean: BTreeMap<String, f64>,
    pub std: BTreeMap<String, f64>,
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// splitmix64's finaliser: spreads the bits of a hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where an event falls, in [0, 1): below `holdout` means held out.
pub fn split_point(id: &str, split_seed: u64) -> f64 {
    let h = mix(fnv1a(id.as_bytes()) ^ split_seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Picks the upstream output that holds the events.
fn source<'a>(ctx: &'a Context, from: Option<&str>) -> Result<(&'a str, &'a Value), String> {
    match from {
        Some(task) => ctx.inputs.get_key_value(task).map(|(k, v)| (k.as_str(), v)).ok_or_else(|| {
            let known: Vec<&str> = ctx.inputs.keys().map(String::as_str).collect();
            format!("params.from: no input from upstream task `{task}` (inputs: {})", list(&known))
        }),
        None => match ctx.inputs.len() {
            1 => ctx.inputs.iter().next().map(|(k, v)| (k.as_str(), v)).ok_or_else(String::new),
            0 => Err("no upstream input: this step reads the `events` of an upstream ml_generate task \
                      (add it to `upstream`)"
                .into()),
            _ => {
                let known: Vec<&str> = ctx.inputs.keys().map(String::as_str).collect();
                Err(format!("several upstream inputs ({}): say which has the events with params.from", list(&known)))
            }
        },
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn number(event: &Map<String, Value>, field: &str, place: &str) -> Result<f64, String> {
    match event.get(field) {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| format!("{place}.{field}: not a finite number")),
        Some(Value::Bool(b)) => Ok(f64::from(u8::from(*b))),
        Some(other) => Err(format!("{place}.{field}: expected a number, got {other}")),
        None => Err(format!("{place}: missing field `{field}`")),
    }
}

#[allow(clippy::redundant_guards)] // float literal patterns read worse than guards
fn flag(event: &Map<String, Value>, field: &str, place: &str) -> Result<bool, String> {
    match number(event, field, place)? {
        v if v == 0.0 => Ok(false),
        v if v == 1.0 => Ok(true),
        v => Err(format!("{place}.{field}: expected 0 or 1, got {v}")),
    }
}

fn text(event: &Map<String, Value>, field: &str, place: &str) -> Result<String, String> {
    match event.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("{place}.{field}: expected a string, got {other}")),
        None => Err(format!("{place}: missing field `{field}`")),
    }
}

/// Reads and checks the events of an upstream output; `task` names it in messages.
pub fn read_events(output: &Value, task: &str) -> Result<(Vec<String>, Vec<Event>), String> {
    let list = output
        .get("events")
        .ok_or_else(|| format!("inputs.{task} has no `events`: is `{task}` an ml_generate task?"))?
        .as_array()
        .ok_or_else(|| format!("inputs.{task}.events: expected a list of events"))?;
    if list.is_empty() {
        return Err(format!("inputs.{task}.events is empty: nothing to learn from"));
    }
    let mut events = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let place = format!("inputs.{task}.events[{i}]");
        let event = item.as_object().ok_or_else(|| format!("{place}: expected an object, got {item}"))?;
        let customer = text(event, "customer", &place)?;
        let id = match event.get("id") {
            Some(_) => text(event, "id", &place)?,
            None => format!("{customer}#{i}"),
        };
        let e = Event {
            id,
            customer,
            amount: number(event, "amount", &place)?,
            hour: number(event, "hour", &place)?,
            account_age_days: number(event, "account_age_days", &place)?,
            n_items: number(event, "n_items", &place)?,
            is_foreign: flag(event, "is_foreign", &place)?,
            payment: text(event, "payment", &place)?,
            fraud: flag(event, "fraud", &place)?,
        };
        for (field, value) in [("amount", e.amount), ("account_age_days", e.account_age_days), ("n_items", e.n_items)] {
            if value < 0.0 {
                return Err(format!("{place}.{field}: must not be negative, got {value}"));
            }
        }
        if !(0.0..24.0).contains(&e.hour) {
            return Err(format!("{place}.hour: must be in 0..24, got {}", e.hour));
        }
        events.push(e);
    }
    // The customers, in the order upstream listed them, then any others in order of appearance.
    let mut customers: Vec<String> = match output.get("customers").and_then(Value::as_array) {
        Some(names) => names.iter().filter_map(|n| n.as_str().map(str::to_string)).collect(),
        None => Vec::new(),
    };
    for e in &events {
        if !customers.contains(&e.customer) {
            customers.push(e.customer.clone());
        }
    }
    Ok((customers, events))
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Builds the feature rows and the split.
pub fn build(customers: &[String], events: &[Event], params: &Params) -> Result<Features, String> {
    if !(0.0..1.0).contains(&params.holdout) {
        return Err(format!("params.holdout must be at least 0 and below 1, got {}", params.holdout));
    }
    let one_hot_customers = params.one_hot_customers.unwrap_or(customers.len() <= ONE_HOT_CUSTOMERS_UP_TO);
    let mut payments: Vec<&str> = events.iter().map(|e| e.payment.as_str()).collect();
    payments.sort_unstable();
    payments.dedup();

    let mut names: Vec<String> = NUMERIC.iter().map(|s| s.to_string()).collect();
    names.push("night".into());
    names.push("is_foreign".into());
    names.extend(payments.iter().map(|p| format!("payment={p}")));
    let customer_names = names.clone();
    if one_hot_customers {
        names.extend(customers.iter().map(|c| format!("customer={c}")));
    }

    let raw = |e: &Event| [(e.amount + 1.0).ln(), (e.account_age_days + 1.0).ln(), e.n_items];
    let held: Vec<bool> = events.iter().map(|e| split_point(&e.id, params.split_seed) < params.holdout).collect();
    let train_rows = held.iter().filter(|&&h| !h).count();
    if train_rows == 0 {
        return Err(format!("all {} events fell in the holdout: lower params.holdout", events.len()));
    }

    // Mean and std of the numeric features, on the training rows only: the holdout must not leak.
    let mut mean = [0.0; 3];
    let mut var = [0.0; 3];
    for e in events.iter().zip(&held).filter(|(_, &h)| !h).map(|(e, _)| e) {
        for (m, v) in mean.iter_mut().zip(raw(e)) {
            *m += v / train_rows as f64;
        }
    }
    for e in events.iter().zip(&held).filter(|(_, &h)| !h).map(|(e, _)| e) {
        for ((s, v), m) in var.iter_mut().zip(raw(e)).zip(&mean) {
            *s += (v - m) * (v - m) / train_rows as f64;
        }
    }
    // A constant column stays 0 after centring rather than dividing by zero.
    let std = var.map(|v| if v.sqrt() > 1e-12 { v.sqrt() } else { 1.0 });

    let mut train = Split::default();
    let mut holdout = Split::default();
    let mut per_customer: Vec<CustomerSplit> =
        customers.iter().map(|c| CustomerSplit { customer: c.clone(), ..CustomerSplit::default() }).collect();
    let position: BTreeMap<&str, usize> = customers.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    for (e, &is_held) in events.iter().zip(&held) {
        let mut row: Vec<f64> = raw(e).iter().zip(&mean).zip(&std).map(|((v, m), s)| round4((v - m) / s)).collect();
        row.push(f64::from(u8::from(e.hour < 6.0)));
        row.push(f64::from(u8::from(e.is_foreign)));
        row.extend(payments.iter().map(|p| f64::from(u8::from(e.payment == *p))));
        let label = f64::from(u8::from(e.fraud));
        // `customers` lists every customer of the events (read_events sees to it).
        if let Some(c) = position.get(e.customer.as_str()).map(|&i| &mut per_customer[i]) {
            let split = if is_held { &mut c.holdout } else { &mut c.train };
            split.x.push(row.clone());
            split.y.push(label);
        }
        if one_hot_customers {
            row.extend(customers.iter().map(|c| f64::from(u8::from(&e.customer == c))));
        }
        let split = if is_held { &mut holdout } else { &mut train };
        split.x.push(row);
        split.y.push(label);
    }
    per_customer.retain(|c| params.per_customer && (!c.train.y.is_empty() || !c.holdout.y.is_empty()));
    let named = |values: [f64; 3]| NUMERIC.iter().map(|n| n.to_string()).zip(values).collect();
    Ok(Features { names, train, holdout, customer_names, per_customer, mean: named(mean), std: named(std) })
}

/// The operator.
pub fn handle(ctx: Context) -> Result<TaskResult, String> {
    let params: Params = ctx.params_as()?;
    let (task, output) = source(&ctx, params.from.as_deref())?;
    let (customers, events) = read_events(output, task)?;
    let f = build(&customers, &events, &params)?;
    let positives = f.train.positives() + f.holdout.positives();
    eprintln!(
        "{} events of {} customers from `{task}` -> {} features; {} rows to train on, {} held out",
        events.len(),
        customers.len(),
        f.names.len(),
        f.train.y.len(),
        f.holdout.y.len()
    );
    let out = json!({
        "features": f.names,
        "x": f.train.x,
        "y": f.train.y,
        "holdout": f.holdout.to_json(),
        "stats": { "mean": f.mean, "std": f.std },
        "split": {
            "train_rows": f.train.y.len(),
            "train_positives": f.train.positives(),
            "holdout_rows": f.holdout.y.len(),
            "holdout_positives": f.holdout.positives(),
        },
        "per_customer_features": f.customer_names,
        "per_customer": f.per_customer.iter().map(CustomerSplit::to_json).collect::<Vec<_>>(),
    });
    let size = serde_json::to_vec(&out).map_err(|e| e.to_string())?.len();
    if size > OUTPUT_LIMIT - 1024 {
        return Err(format!(
            "the feature rows would take {:.2} MiB, over the host's 1 MiB output limit: use fewer events, \
             or set params.one_hot_customers = false{}",
            size as f64 / OUTPUT_LIMIT as f64,
            if params.per_customer { " or params.per_customer = false" } else { "" }
        ));
    }
    for c in &f.per_customer {
        eprintln!(
            "  {}: {} rows to train on ({} positive), {} held out ({} positive)",
            c.customer,
            c.train.y.len(),
            c.train.positives(),
            c.holdout.y.len(),
            c.holdout.positives()
        );
    }
    eprintln!("output: {} KiB", size / 1024);
    Ok(TaskResult::with_output(out)
        .metric("rows", events.len() as f64)
        .metric("positives", positives as f64)
        .metric("train_rows", f.train.y.len() as f64)
        .metric("holdout_rows", f.holdout.y.len() as f64)
        .metric("features", f.names.len() as f64)
        .metric("customers", f.per_customer.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize, customer: &str, amount: f64, fraud: u8) -> Value {
        json!({
            "id": format!("{customer}-{i:05}"), "customer": customer, "amount": amount,
            "hour": (i * 5) % 24, "account_age_days": 10 * i, "n_items": 1 + i % 4,
            "is_foreign": i.is_multiple_of(3), "payment": (["card", "paypal", "crypto"][i % 3]), "fraud": fraud,
        })
    }

    fn upstream(n: usize) -> Value {
        let events: Vec<Value> = (0..n)
            .map(|i| event(i, if i % 2 == 0 { "acme" } else { "globex" }, 10.0 + i as f64, u8::from(i % 5 == 0)))
            .collect();
        json!({ "customers": ["acme", "globex"], "events": events })
    }

    fn ctx_with(inputs: Value, params: Value) -> Context {
        serde_json::from_value(json!({ "abi": 1, "inputs": inputs, "params": params })).unwrap()
    }

    #[test]
    fn builds_standardised_rows_and_a_stable_split() {
        let result = handle(ctx_with(json!({ "generate": upstream(500) }), json!({}))).unwrap();
        let out = &result.output;
        let names: Vec<&str> = out["features"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "log_amount",
                "log_account_age",
                "n_items",
                "night",
                "is_foreign",
                "payment=card",
                "payment=crypto",
                "payment=paypal",
                "customer=acme",
                "customer=globex"
            ]
        );
        let x: Vec<Vec<f64>> = serde_json::from_value(out["x"].clone()).unwrap();
        let held: Vec<Vec<f64>> = serde_json::from_value(out["holdout"]["x"].clone()).unwrap();
        assert_eq!(x.len() + held.len(), 500);
        assert_eq!(out["y"].as_array().unwrap().len(), x.len());
        assert!((70..130).contains(&held.len()), "held out {}", held.len());
        // z-scores on the training rows: mean 0, std 1 (up to rounding).
        for col in 0..3 {
            let mean = x.iter().map(|r| r[col]).sum::<f64>() / x.len() as f64;
            let var = x.iter().map(|r| (r[col] - mean).powi(2)).sum::<f64>() / x.len() as f64;
            assert!(mean.abs() < 1e-3 && (var - 1.0).abs() < 1e-3, "column {col}: mean {mean}, var {var}");
        }
        // One-hot columns: exactly one payment and one customer per row.
        for row in x.iter().chain(&held) {
            assert_eq!(row.len(), 10);
            assert_eq!(row[5..8].iter().sum::<f64>(), 1.0);
            assert_eq!(row[8..].iter().sum::<f64>(), 1.0);
        }
        assert_eq!(result.metrics["rows"], 500.0);
        assert_eq!(result.metrics["positives"], 100.0);
        assert!(out["stats"]["std"]["log_amount"].as_f64().unwrap() > 0.0);
        // The same events, the same split.
        let again = handle(ctx_with(json!({ "generate": upstream(500) }), json!({}))).unwrap();
        assert_eq!(again.output, result.output);
    }

    #[test]
    fn per_customer_rows_are_the_same_rows_without_the_customer_columns() {
        let result = handle(ctx_with(json!({ "generate": upstream(500) }), json!({}))).unwrap();
        let out = &result.output;
        assert_eq!(out["per_customer_features"].as_array().unwrap().len(), 8);
        assert_eq!(out["per_customer_features"][7], "payment=paypal");
        let per = out["per_customer"].as_array().unwrap();
        assert_eq!(per.iter().map(|c| c["customer"].as_str().unwrap()).collect::<Vec<_>>(), ["acme", "globex"]);
        assert_eq!(result.metrics["customers"], 2.0);
        // Every training row of a customer is a global training row with that customer's one-hot
        // column set, minus the customer columns; in the same order.
        let x: Vec<Vec<f64>> = serde_json::from_value(out["x"].clone()).unwrap();
        let y: Vec<f64> = serde_json::from_value(out["y"].clone()).unwrap();
        let mut total = 0;
        for (i, c) in per.iter().enumerate() {
            let cx: Vec<Vec<f64>> = serde_json::from_value(c["x"].clone()).unwrap();
            let cy: Vec<f64> = serde_json::from_value(c["y"].clone()).unwrap();
            let (gx, gy): (Vec<_>, Vec<_>) = x
                .iter()
                .zip(&y)
                .filter(|(row, _)| row[8 + i] == 1.0)
                .map(|(row, &label)| (row[..8].to_vec(), label))
                .unzip();
            assert_eq!(cx, gx);
            assert_eq!(cy, gy);
            let held = c["holdout"]["y"].as_array().unwrap().len();
            assert_eq!(c["holdout"]["x"].as_array().unwrap().len(), held);
            assert!(held > 20, "{held}");
            total += cx.len() + held;
        }
        assert_eq!(total, 500);
        // Turned off: an empty list.
        let off = handle(ctx_with(json!({ "generate": upstream(50) }), json!({ "per_customer": false }))).unwrap();
        assert_eq!(off.output["per_customer"], json!([]));
    }

    #[test]
    fn the_example_dag_output_is_well_under_1_mib() {
        // What dags/ml_training.toml makes: 4 customers × 500 events.
        let events: Vec<Value> = (0..2000)
            .map(|i| {
                event(
                    i,
                    ["acme", "globex", "initech", "umbrella"][i % 4],
                    1.0 + (i % 97) as f64 * 3.3,
                    u8::from(i % 9 == 0),
                )
            })
            .collect();
        let result = handle(ctx_with(json!({ "g": { "events": events } }), json!({}))).unwrap();
        let size = serde_json::to_vec(&result.output).unwrap().len();
        assert!(size < 400 * 1024, "{size} bytes");
    }

    #[test]
    fn split_depends_on_the_id_only() {
        let a = split_point("acme-00001", 0);
        assert_eq!(a, split_point("acme-00001", 0));
        assert_ne!(a, split_point("acme-00001", 1));
        let held = (0..10_000).filter(|i| split_point(&format!("e{i}"), 0) < 0.2).count();
        assert!((1800..2200).contains(&held), "{held}");
    }

    #[test]
    fn params_change_the_columns_and_the_split() {
        let params = json!({ "holdout": 0.0, "one_hot_customers": false, "from": "gen" });
        let result = handle(ctx_with(json!({ "gen": upstream(50), "other": {} }), params)).unwrap();
        assert_eq!(result.output["features"].as_array().unwrap().len(), 8);
        assert_eq!(result.output["holdout"]["y"], json!([]));
        assert_eq!(result.metrics["train_rows"], 50.0);
    }

    #[test]
    fn clear_errors() {
        let err = |inputs: Value, params: Value| handle(ctx_with(inputs, params)).unwrap_err();
        assert!(err(json!({}), json!({})).starts_with("no upstream input"));
        assert_eq!(
            err(json!({ "a": {}, "b": {} }), json!({})),
            "several upstream inputs (a, b): say which has the events with params.from"
        );
        assert_eq!(
            err(json!({ "a": {} }), json!({ "from": "gen" })),
            "params.from: no input from upstream task `gen` (inputs: a)"
        );
        assert_eq!(
            err(json!({ "a": { "rows": 1 } }), json!({})),
            "inputs.a has no `events`: is `a` an ml_generate task?"
        );
        let mut bad = upstream(3);
        bad["events"][2].as_object_mut().unwrap().remove("amount");
        assert_eq!(err(json!({ "g": bad }), json!({})), "inputs.g.events[2]: missing field `amount`");
        let mut bad = upstream(3);
        bad["events"][1]["fraud"] = json!(2);
        assert_eq!(err(json!({ "g": bad }), json!({})), "inputs.g.events[1].fraud: expected 0 or 1, got 2");
        let mut bad = upstream(3);
        bad["events"][0]["hour"] = json!("noon");
        assert_eq!(err(json!({ "g": bad }), json!({})), "inputs.g.events[0].hour: expected a number, got \"noon\"");
        assert!(err(json!({ "g": upstream(3) }), json!({ "holdout": 1.0 })).starts_with("params.holdout must be"));
        assert!(err(json!({ "g": upstream(3) }), json!({ "holdouts": 0.3 }))
            .starts_with("params: unknown field `holdouts`"));
    }

    #[test]
    fn too_big_an_output_is_refused_with_the_way_out() {
        let events: Vec<Value> = (0..5000).map(|i| event(i, &format!("c{}", i % 200), 5.0, 0)).collect();
        let big = json!({ "events": events });
        let e = handle(ctx_with(json!({ "g": big.clone() }), json!({ "one_hot_customers": true }))).unwrap_err();
        assert!(e.contains("over the host's 1 MiB output limit"), "{e}");
        // By default, 200 customers get no one-hot columns, and it fits.
        let ok = handle(ctx_with(json!({ "g": big }), json!({}))).unwrap();
        assert_eq!(ok.metrics["features"], 8.0);
    }
}
