//! DAG versions: a content hash of the validated spec.
//!
//! The hash is taken over a canonical JSON built here field by field, not over the file, so that
//! formatting, comments, key order and task order do not matter while every behaviour-changing
//! value does. Plugins enter by their pinned `sha256:` id, never their path: the same path with a
//! rebuilt plugin is a new version, and moving a plugin file is not. Object keys are written
//! sorted by our own writer, so the result does not depend on serde_json's `preserve_order`
//! feature being switched on by some other crate in the build.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Dag, Task, TaskKind};

/// How many hex digits of the hash a version shows: 64 bits, plenty to tell one DAG's versions
/// apart, short enough to read in a UI.
const VERSION_HEX_DIGITS: usize = 16;

pub(super) fn version(dag: &Dag) -> String {
    let mut canonical = String::new();
    write_canonical(&spec(dag), &mut canonical);
    let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
    format!("v{}", &digest[..VERSION_HEX_DIGITS])
}

/// Everything about a DAG that changes what its runs do.
fn spec(dag: &Dag) -> Value {
    let mut tasks: Vec<&Task> = dag.tasks.iter().collect();
    tasks.sort_by(|a, b| a.id.cmp(&b.id));
    let mut spec = json!({
        "id": dag.id,
        "schedule": dag.schedule.expr(),
        "start_date": dag.start_date.map(instant),
        "end_date": dag.end_date.map(instant),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tasks": tasks.into_iter().map(task_spec).collect::<Vec<_>>(),
    });
    // Fields added after the first release enter the hash only when set, so the versions of DAGs
    // that do not use them stay as they were.
    if dag.max_active_tasks != Dag::DEFAULT_MAX_ACTIVE_TASKS {
        spec["max_active_tasks"] = json!(dag.max_active_tasks);
    }
    spec
}

fn task_spec(task: &Task) -> Value {
    let mut spec = json!({
        "id": task.id,
        "plugin_id": task.plugin_id,
        "params": task.params,
        "upstream": task.upstream,
        "trigger_rule": task.trigger_rule.as_str(),
        "retries": task.retries,
        "retry_delay": duration(task.retry_delay),
        "retry_exponential_backoff": task.retry_exponential_backoff,
        "max_retry_delay": task.max_retry_delay.map(duration),
        "timeout": task.timeout.map(duration),
        "fuel": task.fuel,
        "memory_mb": task.memory_mb,
    });
    let mut extra = |name: &str, value: Value| {
        spec[name] = value;
    };
    if task.kind != TaskKind::Task {
        extra("kind", json!(task.kind.as_str()));
    }
    if let Some(map_over) = &task.map_over {
        extra("map_over", json!(map_over));
    }
    if task.kind == TaskKind::Sensor {
        extra("poke_interval", json!(duration(task.poke_interval)));
        extra("watch_dags", json!(task.watch_dags));
    }
    if task.pool != Task::DEFAULT_POOL || task.pool_slots != 1 {
        extra("pool", json!(task.pool));
        extra("pool_slots", json!(task.pool_slots));
    }
    if task.priority_weight != 1 {
        extra("priority_weight", json!(task.priority_weight));
    }
    // What a try may touch is part of what it does: more access is a new version.
    if !task.grants.is_default() {
        extra("grants", serde_json::to_value(&task.grants).expect("grants serialise"));
    }
    spec
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Exact and canonical: `"1h 30m"` and `"90m"` both give `"1h 30m"`.
fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Compact JSON with object keys in sorted order.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                // Display of a JSON value is its compact JSON, escapes included.
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value = json!({"b": [1, {"z": null, "a": "x\"y"}], "a": true});
        let mut out = String::new();
        write_canonical(&value, &mut out);
        assert_eq!(out, r#"{"a":true,"b":[1,{"a":"x\"y","z":null}]}"#);
    }

    #[test]
    fn durations_are_canonical() {
        assert_eq!(duration(Duration::from_secs(90 * 60)), "1h 30m");
        assert_eq!(duration(Duration::from_millis(1500)), "1s 500ms");
    }
}
