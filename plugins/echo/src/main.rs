//! `echo`: returns its params and inputs (and the run's conf when it has one, and for a mapped
//! instance its item) as its output.
//! Handy for checking what a task receives.

use sandflow_sdk::{json, Context, TaskResult};

fn echo(ctx: Context) -> Result<TaskResult, String> {
    eprintln!("echo: task {} try {}", ctx.task_id, ctx.try_number);
    let mut output = json!({ "params": ctx.params, "inputs": ctx.inputs });
    if !ctx.conf.is_empty() {
        output["conf"] = ctx.conf.into();
    }
    if let Some(item) = ctx.map_item {
        output["map_item"] = item;
    }
    Ok(TaskResult::with_output(output))
}

fn main() {
    sandflow_sdk::run(echo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_params_and_inputs() {
        let ctx: Context = serde_json::from_str(r#"{"abi":1,"params":{"a":1},"inputs":{"up":[2]}}"#).unwrap();
        let result = echo(ctx).unwrap();
        assert_eq!(result.output, json!({"params": {"a": 1}, "inputs": {"up": [2]}}));
    }
}
