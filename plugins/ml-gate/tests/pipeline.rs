//! `dags/ml_training.toml` end to end, natively: each step's `handle` called by hand with the context
//! the scheduler would build (the mapped training once per customer, its outputs handed on as a list
//! in map order), with the DAG file's params.

use sandflow_sdk::{json, Context, TaskResult, Value};

/// The context of one task: params, inputs and (for a mapped instance) its index and item.
fn context(task: &str, params: Value, inputs: Value, map: Option<(u64, Value)>) -> Context {
    let mut ctx = json!({
        "abi": 1, "dag_id": "ml_training", "dag_version": "v0123456789abcdef",
        "run_id": "scheduled__2026-11-28T00:00:00Z", "task_id": task,
        "logical_date": "2026-11-28T00:00:00Z",
        "data_interval": { "start": "2026-11-28T00:00:00Z", "end": "2026-11-29T00:00:00Z" },
        "params": params, "inputs": inputs,
    });
    if let Some((index, item)) = map {
        ctx["map_index"] = json!(index);
        ctx["map_item"] = item;
    }
    let text = serde_json::to_vec(&ctx).unwrap();
    assert!(text.len() < 1 << 20, "the context of {task} is {} bytes", text.len());
    serde_json::from_slice(&text).unwrap()
}

/// A result as the host would read it back from stdout (and under the 1 MiB output limit).
fn through_stdout(result: TaskResult) -> TaskResult {
    let text = serde_json::to_vec(&result).unwrap();
    assert!(text.len() < 1 << 20, "{} bytes of output", text.len());
    TaskResult::parse(&text).unwrap()
}

struct Run {
    features: Value,
    train: Value,
    evaluate: Value,
    gate: TaskResult,
}

/// generate → features → train (mapped) → evaluate → gate, with the example DAG's params and the
/// run's `conf`.
fn run_until_the_gate(conf: Value) -> Run {
    let generate = through_stdout(
        ml_generate::handle(context(
            "generate",
            json!({ "customers": ["acme", "globex", "initech", "umbrella"], "events_per_customer": 500, "seed": 7, "fraud_rate": 0.1 }),
            json!({}),
            None,
        ))
        .unwrap(),
    );
    let features = through_stdout(
        ml_features::handle(context(
            "features",
            json!({ "holdout": 0.2 }),
            json!({ "generate": generate.output }),
            None,
        ))
        .unwrap(),
    );
    let size = serde_json::to_vec(&features.output).unwrap().len();
    eprintln!("features output: {} KiB", size / 1024);
    assert!(size < 512 * 1024, "features output {size} bytes");
    // map_over = "inputs.features.per_customer": one instance per element, outputs listed in order.
    let items = features.output["per_customer"].as_array().unwrap().clone();
    assert_eq!(items.len(), 4);
    let inputs = json!({ "features": features.output });
    let train: Vec<Value> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let ctx = context(
                "train",
                json!({ "hyper": { "epochs": 300, "learning_rate": 0.5 } }),
                inputs.clone(),
                Some((i as u64, item)),
            );
            through_stdout(logreg::handle(ctx).unwrap()).output
        })
        .collect();
    let train = Value::Array(train);
    let mut ctx =
        context("evaluate", json!({ "min_auc": 0.75 }), json!({ "features": features.output, "train": train }), None);
    ctx.conf = serde_json::from_value(conf).unwrap();
    let evaluate = through_stdout(ml_evaluate::handle(ctx).unwrap());
    let gate = through_stdout(
        ml_gate::handle(context(
            "gate",
            json!({ "from": "evaluate", "pass": "publish", "fail": "report" }),
            json!({ "evaluate": evaluate.output }),
            None,
        ))
        .unwrap(),
    );
    Run { features: features.output, train, evaluate: evaluate.output, gate }
}

#[test]
fn the_example_publishes_one_model_per_customer() {
    let run = run_until_the_gate(json!({}));
    for c in run.evaluate["customers"].as_array().unwrap() {
        eprintln!("{}: auc {} ({} holdout rows, {} positive)", c["customer"], c["auc"], c["rows"], c["positives"]);
    }
    eprintln!("auc mean {}, min {}", run.evaluate["auc_mean"], run.evaluate["auc_min"]);
    let customers: Vec<&str> = run.train.as_array().unwrap().iter().map(|m| m["customer"].as_str().unwrap()).collect();
    assert_eq!(customers, ["acme", "globex", "initech", "umbrella"]);
    // Per-customer models have the per-customer columns: no customer one-hot.
    assert_eq!(
        run.train[0]["weights"].as_array().unwrap().len(),
        run.features["per_customer_features"].as_array().unwrap().len()
    );
    assert_eq!(run.evaluate["evaluated"], 4);
    assert_eq!(run.evaluate["passed"], true, "{}", run.evaluate);
    assert_eq!(run.gate.branch, Some(vec!["publish".to_string()]));

    let publish = through_stdout(
        ml_publish::handle(context(
            "publish",
            json!({ "name": "fraud" }),
            json!({ "train": run.train, "evaluate": run.evaluate, "gate": run.gate.output }),
            None,
        ))
        .unwrap(),
    );
    let models = publish.output["models"].as_array().unwrap();
    assert_eq!(models.len(), 4);
    for (card, name) in models.iter().zip(["acme", "globex", "initech", "umbrella"]) {
        assert_eq!(card["customer"], name);
        assert!(card["model_id"].as_str().unwrap().starts_with(&format!("fraud-{name}-")));
        assert_eq!(card["published_at"], "2026-11-28T00:00:00Z");
        assert!(card["auc"].as_f64().unwrap() >= 0.75);
    }
    assert_eq!(publish.output["not_published"], json!([]));
}

#[test]
fn a_stricter_gate_takes_the_report_branch() {
    // As the DAG's comment says: trigger with conf {"min_auc": 0.99}.
    let run = run_until_the_gate(json!({ "min_auc": 0.99 }));
    assert_eq!(run.evaluate["passed"], false);
    assert_eq!(run.gate.branch, Some(vec!["report".to_string()]));
    assert_eq!(run.gate.output, json!({ "passed": false, "chosen": "report" }));
    // The report step (ml_publish in report mode) succeeds and says why.
    let report = through_stdout(
        ml_publish::handle(context(
            "report",
            json!({ "mode": "report" }),
            json!({ "evaluate": run.evaluate, "gate": run.gate.output }),
            None,
        ))
        .unwrap(),
    );
    assert_eq!(report.output["published"], false);
    let reason = report.output["reason"].as_str().unwrap();
    assert!(reason.starts_with("customers below min auc 0.99: "), "{reason}");
    // Publishing the same verdict is refused, as a wrongly wired DAG would see.
    let err = ml_publish::handle(context(
        "publish",
        json!({}),
        json!({ "train": run.train, "evaluate": run.evaluate }),
        None,
    ))
    .unwrap_err();
    assert!(err.starts_with("evaluation did not pass: customers below min auc 0.99"), "{err}");
}
