//! {{name}}: a Sandflow operator (ABI v1). It sums `params.numbers` (default: none) and says how
//! many there were. Build: `./build.sh`; run: `sandflow plugin run {{name}}.wasm --context
//! tests/basic.context.json`; test: `sandflow plugin test tests`.

use sandflow_sdk::{json, Context, TaskResult, Value};

fn operate(ctx: Context) -> Result<TaskResult, String> {
    let numbers = match ctx.params.get("numbers") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_f64().ok_or_else(|| format!("params.numbers holds {v}, not a number")))
            .collect::<Result<Vec<f64>, String>>()?,
        Some(other) => return Err(format!("params.numbers must be a list of numbers, not {other}")),
    };
    let sum: f64 = numbers.iter().sum();
    eprintln!("summing {} numbers", numbers.len());
    Ok(TaskResult::with_output(json!({ "count": numbers.len(), "sum": sum })).metric("sum", sum))
}

fn main() {
    sandflow_sdk::run(operate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_numbers() {
        let ctx: Context = serde_json::from_value(json!({"abi": 1, "params": {"numbers": [1, 2.5]}})).unwrap();
        assert_eq!(operate(ctx).unwrap().output, json!({"count": 2, "sum": 3.5}));
    }
}
