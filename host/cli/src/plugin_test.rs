//! `sandflow plugin test DIR`: runs a plugin against recorded task contexts and compares each
//! result with the one expected (golden files), so plugin authors can test in their own CI.
//!
//! A case is a pair of files in DIR: `NAME.context.json` (the task context, fields left out take
//! their defaults) and `NAME.expected.json`: either the exact task result (`{"output": ...,
//! "metrics": ...}`, numbers equal to 1e-9 relative) or `{"error": "TEXT"}` for a try that must
//! fail with TEXT in its reason or its log. `--update` writes what the plugin returned as the expected files.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use sandflow_sandbox::{KillSwitch, Limits, Outcome};
use serde_json::Value;

use crate::out::{errln, outln};
use crate::{CliError, Home};

const CONTEXT_SUFFIX: &str = ".context.json";
const EXPECTED_SUFFIX: &str = ".expected.json";

/// Runs every case in `dir`; fails when one does not match.
pub async fn run(dir: &Path, plugin: Option<&str>, update: bool, limits: Limits, home: &Home) -> Result<(), CliError> {
    let cases = cases(dir)?;
    let target = match plugin {
        Some(p) => p.to_string(),
        None => find_plugin(dir)?.display().to_string(),
    };
    let (sandbox, plugin) = crate::plugin_cmd::load(&target, home).await?;
    let mut failed = Vec::new();
    for (name, context_path) in &cases {
        // As `plugin run --context` reads it: a regular file, of a bounded size.
        let input = crate::plugin_cmd::context(&format!("@{}", context_path.display()))?;
        let report = sandbox.run(&plugin, &input, &limits, &KillSwitch::new()).await;
        let actual = match &report.outcome {
            Outcome::Success { result } => serde_json::to_value(result).map_err(anyhow::Error::from)?,
            failure => serde_json::json!({ "error": failure.to_string() }),
        };
        let expected_path = dir.join(format!("{name}{EXPECTED_SUFFIX}"));
        if update {
            let text = serde_json::to_string_pretty(&actual).map_err(anyhow::Error::from)? + "\n";
            std::fs::write(&expected_path, text).with_context(|| expected_path.display().to_string())?;
            outln!("updated {name}");
            continue;
        }
        let expected = match std::fs::read_to_string(&expected_path) {
            Ok(text) => serde_json::from_str::<Value>(&text)
                .with_context(|| format!("{} is not JSON", expected_path.display()))?,
            Err(e) => {
                return Err(anyhow!(
                    "{}: {e} (every NAME{CONTEXT_SUFFIX} needs a NAME{EXPECTED_SUFFIX}; --update writes them)",
                    expected_path.display()
                )
                .into())
            }
        };
        let expected = normalize(expected).with_context(|| expected_path.display().to_string())?;
        match difference(&expected, &actual, &report.log) {
            None => outln!("ok    {name}"),
            Some(diff) => {
                outln!("FAIL  {name}: {diff}");
                if !report.log.trim().is_empty() {
                    errln!("      its log:\n{}", indent(&sandflow_core::text::clean(&report.log, true)));
                }
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        outln!("{} case(s) passed", cases.len());
        Ok(())
    } else {
        Err(CliError::Failed(format!("{} of {} case(s) failed: {}", failed.len(), cases.len(), failed.join(", "))))
    }
}

/// The cases in `dir`, by name, in name order.
fn cases(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut cases = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else { continue };
        if let Some(name) = file.strip_suffix(CONTEXT_SUFFIX) {
            cases.push((name.to_string(), path.clone()));
        }
    }
    cases.sort();
    if cases.is_empty() {
        bail!("no test cases in {}: a case is a NAME{CONTEXT_SUFFIX} with a NAME{EXPECTED_SUFFIX}", dir.display());
    }
    Ok(cases)
}

/// Without `--plugin`: the one `.wasm` file in DIR or, failing that, in its parent (a plugin
/// project keeps its cases in `tests/` beside the `.wasm` its build writes).
fn find_plugin(dir: &Path) -> anyhow::Result<PathBuf> {
    let parent = dir.canonicalize().ok().and_then(|d| d.parent().map(Path::to_path_buf));
    for place in std::iter::once(dir.to_path_buf()).chain(parent) {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&place)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
            .collect();
        match found.len() {
            0 => continue,
            1 => return Ok(found.remove(0)),
            _ => bail!("{} holds {} .wasm files: say which with --plugin FILE", place.display(), found.len()),
        }
    }
    bail!("no .wasm file in {} or its parent: say which plugin with --plugin FILE", dir.display())
}

/// An expected task result as the host reads one (defaults dropped, unknown fields refused), so
/// that `"metrics": {}` in a golden file matches a result without metrics; `{"error": ...}` as is.
fn normalize(expected: Value) -> anyhow::Result<Value> {
    if expected.get("error").is_some() {
        return Ok(expected);
    }
    let result = sandflow_sdk::TaskResult::parse(expected.to_string().as_bytes())
        .map_err(|e| anyhow!("not a task result (nor {{\"error\": TEXT}}): {e}"))?;
    Ok(serde_json::to_value(result)?)
}

/// Where `actual` differs from `expected`, as `path: expected X, got Y`; `None` when they match.
/// Numbers match within 1e-9 relative; `{"error": TEXT}` matches a failure with TEXT in its reason
/// or its `log` (a v1 plugin's reason is its exit code, its message is on stderr).
pub fn difference(expected: &Value, actual: &Value, log: &str) -> Option<String> {
    if let (Some(want), Some(Value::Object(got))) = (expected.get("error").and_then(Value::as_str), Some(actual)) {
        if expected.as_object().is_some_and(|o| o.len() == 1) {
            return match got.get("error").and_then(Value::as_str) {
                Some(reason) if reason.contains(want) || log.contains(want) => None,
                Some(reason) => Some(format!("expected a failure with {want:?}, got the failure {reason:?}")),
                None => Some(format!("expected a failure with {want:?}, got success: {}", short(actual))),
            };
        }
    }
    if let Some(reason) = actual.get("error").and_then(Value::as_str) {
        return Some(format!("the try failed: {reason}"));
    }
    diff_at("", expected, actual)
}

fn diff_at(path: &str, expected: &Value, actual: &Value) -> Option<String> {
    let at = |p: &str| if p.is_empty() { "the result".to_string() } else { p.to_string() };
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            let close = a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
            (!close).then(|| format!("{}: expected {a}, got {b}", at(path)))
        }
        (Value::Object(a), Value::Object(b)) => {
            for (key, want) in a {
                let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match b.get(key) {
                    Some(got) => {
                        if let Some(d) = diff_at(&sub, want, got) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{sub}: expected {}, missing", short(want))),
                }
            }
            let extra: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
            (!extra.is_empty()).then(|| format!("{}: unexpected field(s) {extra:?}", at(path)))
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (want, got)) in a.iter().zip(b).enumerate() {
                if let Some(d) = diff_at(&format!("{path}[{i}]"), want, got) {
                    return Some(d);
                }
            }
            (a.len() != b.len()).then(|| format!("{}: expected {} elements, got {}", at(path), a.len(), b.len()))
        }
        (a, b) => (a != b).then(|| format!("{}: expected {}, got {}", at(path), short(a), short(b))),
    }
}

fn short(value: &Value) -> String {
    sandflow_core::text::shorten(&value.to_string(), 80).to_string()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_results_match_and_numbers_within_rounding() {
        assert_eq!(difference(&json!({"output": {"a": 0.1}}), &json!({"output": {"a": 0.1000000000001}}), ""), None);
        let d = difference(&json!({"output": {"v": [1, 2]}}), &json!({"output": {"v": [1, 3]}}), "").unwrap();
        assert_eq!(d, "output.v[1]: expected 2, got 3");
        let d = difference(&json!({"output": 1}), &json!({"output": 1, "metrics": {"m": 1}}), "").unwrap();
        assert_eq!(d, r#"the result: unexpected field(s) ["metrics"]"#);
    }

    #[test]
    fn an_expected_error_matches_a_failure_with_that_text() {
        let failure = json!({"error": "the task failed: column `x` is not in the header"});
        assert_eq!(difference(&json!({"error": "column `x`"}), &failure, ""), None);
        assert!(difference(&json!({"error": "other"}), &failure, "").unwrap().contains("got the failure"));
        assert!(difference(&json!({"error": "x"}), &json!({"output": 1}), "").unwrap().contains("got success"));
        assert!(difference(&json!({"output": 1}), &failure, "").unwrap().starts_with("the try failed"));
        // A v1 plugin's message is in its log; its reason is its exit code.
        let exit = json!({"error": "exit code 1"});
        assert_eq!(difference(&json!({"error": "bad params"}), &exit, "12:00 error: bad params\n"), None);
    }
}
