//! `report`: the last task of `dags/polyglot.toml`, an ABI v2 operator in Rust. It reads what the
//! tasks in other languages computed from one column of a CSV file (statistics in C, a histogram in
//! Zig, quantiles in AssemblyScript, z-scores in Go) and writes one summary: the figures, the
//! outliers past `params.outlier_z` (default 2), the fullest histogram bin and a line of text.
//! Progress and metrics go to the host as it works (`v2::progress`, `v2::metric`).

use sandflow_sdk::{json, v2, Context, TaskResult, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Stats {
    count: u64,
    mean: f64,
    stddev: f64,
    min: f64,
    max: f64,
}

#[derive(Deserialize)]
struct Bin {
    lo: f64,
    hi: f64,
    count: u64,
}

#[derive(Deserialize)]
struct Histogram {
    bins: Vec<Bin>,
}

#[derive(Deserialize)]
struct Quantiles {
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
}

#[derive(Deserialize)]
struct Zscores {
    z: Vec<f64>,
}

/// The summary; a plain function, unit-tested natively.
pub fn report(ctx: Context) -> Result<TaskResult, String> {
    let outlier_z = ctx.params.get("outlier_z").and_then(Value::as_f64).unwrap_or(2.0);
    let stats: Stats = ctx.input_as("stats")?;
    v2::progress(0.25, "read the statistics");
    let histogram: Histogram = ctx.input_as("histogram")?;
    let quantiles: Quantiles = ctx.input_as("quantiles")?;
    v2::progress(0.5, "read the histogram and quantiles");
    let zscores: Zscores = ctx.input_as("zscores")?;
    let outliers = zscores.z.iter().filter(|z| z.abs() > outlier_z).count();
    if outliers > 0 {
        v2::log::warn(&format!(
            "{outliers} of {} values lie more than {outlier_z} standard deviations out",
            stats.count
        ));
    }
    let fullest = histogram.bins.iter().max_by_key(|b| b.count);
    v2::progress(0.75, "summing up");
    let text = format!(
        "{} values, mean {:.2} ± {:.2}, median {}, range {}..{}, {} outlier(s)",
        stats.count,
        stats.mean,
        stats.stddev,
        quantiles.p50.map_or("n/a".into(), |p| format!("{p:.2}")),
        stats.min,
        stats.max,
        outliers
    );
    v2::log::info(&text);
    v2::metric("outliers", outliers as f64);
    v2::progress(1.0, "done");
    let output = json!({
        "count": stats.count,
        "mean": stats.mean,
        "stddev": stats.stddev,
        "p50": quantiles.p50,
        "p90": quantiles.p90,
        "p99": quantiles.p99,
        "outliers": outliers,
        "fullest_bin": fullest.map(|b| json!({"lo": b.lo, "hi": b.hi, "count": b.count})),
        "text": text,
    });
    Ok(TaskResult::with_output(output).metric("count", stats.count as f64).metric("mean", stats.mean))
}

sandflow_sdk::operator!(report);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_up_the_upstream_figures() {
        let ctx: Context = serde_json::from_value(json!({
            "abi": 2,
            "inputs": {
                "stats": {"count": 4, "mean": 2.5, "stddev": 1.118, "min": 1, "max": 4, "sum": 10},
                "histogram": {"bins": [{"lo": 1, "hi": 2.5, "count": 2}, {"lo": 2.5, "hi": 4, "count": 2}]},
                "quantiles": {"p50": 2.5, "p90": 3.7, "p99": 3.97, "iqr": 1.5},
                "zscores": {"z": [-1.34, -0.45, 0.45, 2.5], "max_abs_z": 2.5}
            }
        }))
        .unwrap();
        let result = report(ctx).unwrap();
        assert_eq!(result.output["outliers"], 1);
        assert_eq!(result.output["fullest_bin"]["count"], 2);
        assert!(result.output["text"].as_str().unwrap().starts_with("4 values, mean 2.50 ± 1.12, median 2.50"));
        assert_eq!(result.metrics["count"], 4.0);
    }

    #[test]
    fn a_missing_input_names_it() {
        let ctx: Context = serde_json::from_value(json!({"abi": 2})).unwrap();
        assert_eq!(report(ctx).err().unwrap(), "no input from upstream task `stats`");
    }
}
