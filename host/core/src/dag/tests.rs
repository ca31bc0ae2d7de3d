//! Unit tests of DAG parsing and validation: one test per rule, and the shape of a valid [`Dag`].
//! The exact wording users see is pinned by the snapshot tests in `tests/ui`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::*;

const ID: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

/// `sha256:` ids as they are; `.wasm` paths pinned to the hash of their text unless "missing".
fn resolve(plugin: &PluginRef) -> Result<String, String> {
    match plugin {
        PluginRef::Id(id) => Ok(id.clone()),
        PluginRef::Path(path) if path.contains("missing") => Err(format!("no such file: {path}")),
        PluginRef::Path(path) if path.ends_with(".wasm") => {
            Ok(format!("sha256:{}", hex::encode(Sha256::digest(path.as_bytes()))))
        }
        PluginRef::Path(path) => Err(format!("not a .wasm file: {path}")),
    }
}

fn parse(text: &str) -> Result<Dag, Vec<Diagnostic>> {
    parse_dag("t.toml", text, &Caps::default(), &mut resolve)
}

fn dag(text: &str) -> Dag {
    parse(text).unwrap_or_else(|diagnostics| {
        let lines: Vec<_> = diagnostics.iter().map(ToString::to_string).collect();
        panic!("expected a valid DAG:\n{}", lines.join("\n"))
    })
}

/// The diagnostics of an invalid file, as `line:column: field: message` (without the file name).
fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(dag) => panic!("expected errors, parsed {dag:?}"),
        Err(diagnostics) => {
            diagnostics.iter().map(|d| d.to_string().trim_start_matches("t.toml:").to_owned()).collect()
        }
    }
}

/// `[tasks.<name>]` tables with a plugin each.
fn tasks(names: &[&str]) -> String {
    names.iter().map(|name| format!("[tasks.{name}]\nplugin = \"plugins/{name}.wasm\"\n")).collect()
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()).expect("test timestamp")
}

fn ids(dag: &Dag) -> Vec<&str> {
    dag.tasks.iter().map(|task| task.id.as_str()).collect()
}

// ---- a valid DAG ----

#[test]
fn defaults_of_a_minimal_dag() {
    let dag = dag(&format!("id = \"minimal\"\n{}", tasks(&["only"])));
    assert_eq!(dag.id, "minimal");
    assert_eq!(dag.description, None);
    assert!(dag.tags.is_empty());
    assert_eq!(dag.owner, None);
    assert_eq!(dag.schedule, Schedule::Manual);
    assert_eq!((dag.start_date, dag.end_date), (None, None));
    assert!(!dag.catchup);
    assert_eq!(dag.max_active_runs, 16);
    assert_eq!(dag.paused, None);
    let task = &dag.tasks[0];
    assert_eq!(task.plugin, PluginRef::Path("plugins/only.wasm".into()));
    assert_eq!(task.plugin_id, resolve(&task.plugin).expect("resolves"));
    assert!(task.params.is_empty());
    assert!(task.upstream.is_empty());
    assert_eq!(task.trigger_rule, TriggerRule::AllSuccess);
    assert_eq!(task.retries, 0);
    assert_eq!(task.retry_delay, Duration::from_secs(30));
    assert!(!task.retry_exponential_backoff);
    assert_eq!((task.max_retry_delay, task.timeout, task.fuel, task.memory_mb), (None, None, None, None));
}

#[test]
fn every_dag_field() {
    let dag = dag(&format!(
        r#"
        id = "full"
        description = "d"
        tags = ["a", "b"]
        owner = "o"
        schedule = "0 3 * * *"
        start_date = "2026-11-01"
        end_date = 2026-12-31T23:00:00+01:00
        catchup = true
        max_active_runs = 2
        is_paused_upon_creation = true
        {}"#,
        tasks(&["t"])
    ));
    assert_eq!(dag.description.as_deref(), Some("d"));
    assert_eq!(dag.tags, ["a", "b"]);
    assert_eq!(dag.owner.as_deref(), Some("o"));
    assert_eq!(dag.schedule.expr(), Some("0 3 * * *"));
    assert_eq!(dag.start_date, Some(utc("2026-11-01T00:00:00Z")));
    assert_eq!(dag.end_date, Some(utc("2026-12-31T22:00:00Z")));
    assert!(dag.catchup);
    assert_eq!(dag.max_active_runs, 2);
    assert_eq!(dag.paused, Some(true));
}

#[test]
fn defaults_apply_and_tasks_override_them() {
    let dag = dag(r#"
        id = "d"
        [defaults]
        retries = 2
        retry_delay = "1m"
        retry_exponential_backoff = true
        max_retry_delay = "10m"
        timeout = "1h 30m"
        fuel = 1000
        memory_mb = 64
        trigger_rule = "all_done"
        [tasks.inherits]
        plugin = "a.wasm"
        [tasks.overrides]
        plugin = "b.wasm"
        retries = 0
        retry_delay = "5s"
        retry_exponential_backoff = false
        timeout = "5m"
        memory_mb = 128
        trigger_rule = "always"
    "#);
    let inherits = dag.task("inherits").expect("task");
    assert_eq!(inherits.retries, 2);
    assert_eq!(inherits.retry_delay, Duration::from_secs(60));
    assert!(inherits.retry_exponential_backoff);
    assert_eq!(inherits.max_retry_delay, Some(Duration::from_secs(600)));
    assert_eq!(inherits.timeout, Some(Duration::from_secs(90 * 60)));
    assert_eq!((inherits.fuel, inherits.memory_mb), (Some(1000), Some(64)));
    assert_eq!(inherits.trigger_rule, TriggerRule::AllDone);
    let overrides = dag.task("overrides").expect("task");
    assert_eq!(overrides.retries, 0);
    assert_eq!(overrides.retry_delay, Duration::from_secs(5));
    assert!(!overrides.retry_exponential_backoff);
    assert_eq!(overrides.timeout, Some(Duration::from_secs(300)));
    assert_eq!((overrides.fuel, overrides.memory_mb), (Some(1000), Some(128)));
    assert_eq!(overrides.trigger_rule, TriggerRule::Always);
}

#[test]
fn params_become_json() {
    let dag = dag(r#"
        id = "p"
        [tasks.a]
        plugin = "a.wasm"
        [tasks.a.params]
        rows = 10000
        ratio = 0.5
        name = "x"
        on = true
        list = [1, "two"]
        when = 2026-11-01
        nested.deep = { hex = 0xff }
    "#);
    let params = serde_json::Value::Object(dag.tasks[0].params.clone());
    let expected = json!({
        "rows": 10000, "ratio": 0.5, "name": "x", "on": true, "list": [1, "two"],
        "when": "2026-11-01", "nested": {"deep": {"hex": 255}},
    });
    assert_eq!(params, expected);
}

#[test]
fn trigger_rules_by_name() {
    for rule in TriggerRule::ALL {
        let text = format!("id = \"r\"\n[tasks.a]\nplugin = \"a.wasm\"\ntrigger_rule = \"{rule}\"\n");
        assert_eq!(dag(&text).tasks[0].trigger_rule, rule);
        let json = serde_json::to_string(&rule).expect("serializes");
        assert_eq!(json, format!("\"{rule}\""));
    }
}

#[test]
fn plugin_ids_are_kept_as_written() {
    let dag = dag(&format!("id = \"p\"\n[tasks.a]\nplugin = \"{ID}\"\n"));
    assert_eq!(dag.tasks[0].plugin, PluginRef::Id(ID.into()));
    assert_eq!(dag.tasks[0].plugin_id, ID);
}

#[test]
fn the_resolver_is_called_once_per_task() {
    let mut seen = Vec::new();
    let text = format!("id = \"r\"\n{}[tasks.c]\nplugin = \"{ID}\"\n", tasks(&["a", "b"]));
    let parsed = parse_dag("t.toml", &text, &Caps::default(), &mut |plugin| {
        seen.push(plugin.clone());
        resolve(plugin)
    });
    assert!(parsed.is_ok());
    seen.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(
        seen,
        [PluginRef::Path("plugins/a.wasm".into()), PluginRef::Path("plugins/b.wasm".into()), PluginRef::Id(ID.into())]
    );
}

// ---- dependencies and order ----

#[test]
fn flow_and_upstream_combine() {
    let text = format!(
        "id = \"f\"\nflow = [\"a >> [b, c] >> d\", \"d << c\", \"[a, b] >> [e, f]\"]\n{}\
         [tasks.g]\nplugin = \"g.wasm\"\nupstream = [\"f\", \"e\", \"f\"]\n",
        tasks(&["a", "b", "c", "d", "e", "f"])
    );
    let dag = dag(&text);
    let upstream = |id: &str| dag.task(id).expect("task").upstream.clone();
    assert_eq!(upstream("a"), Vec::<String>::new());
    assert_eq!(upstream("b"), ["a"]);
    assert_eq!(upstream("c"), ["a"]);
    assert_eq!(upstream("d"), ["b", "c"]);
    assert_eq!(upstream("e"), ["a", "b"]);
    assert_eq!(upstream("g"), ["e", "f"]);
    assert_eq!(dag.downstream("a"), ["b", "c", "e", "f"]);
    assert_eq!(dag.downstream("g"), Vec::<&str>::new());
    assert_eq!(dag.downstream("nope"), Vec::<&str>::new());
}

#[test]
fn a_chain_in_flow() {
    let dag = dag(&format!("id = \"c\"\nflow = [\"c >> b >> a\"]\n{}", tasks(&["a", "b", "c"])));
    assert_eq!(ids(&dag), ["c", "b", "a"]);
}

#[test]
fn topological_order_keeps_file_order_for_ties() {
    let text = format!(
        "id = \"o\"\nflow = [\"extract >> load\", \"report << load\"]\n{}",
        tasks(&["report", "cleanup", "load", "extract", "audit"])
    );
    assert_eq!(ids(&dag(&text)), ["cleanup", "extract", "load", "report", "audit"]);
}

#[test]
fn task_lookup() {
    let dag = dag(&format!("id = \"l\"\n{}", tasks(&["a"])));
    assert!(dag.task("a").is_some());
    assert!(dag.task("b").is_none());
}

// ---- versions ----

const BASE: &str = r#"
id = "v"
schedule = "@daily"
start_date = "2026-11-01"
[defaults]
retries = 1
[tasks.a]
plugin = "plugins/a.wasm"
params = { rows = 10, mode = "fast" }
[tasks.b]
plugin = "plugins/b.wasm"
upstream = ["a"]
"#;

#[test]
fn version_format() {
    let version = dag(BASE).version();
    assert_eq!(version.len(), 17);
    assert!(version.starts_with('v'));
    assert!(version[1..].bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn version_ignores_formatting_order_and_comments() {
    let reordered = r#"
# the same DAG, written differently
[tasks.b]
upstream = [ "a" ]   # after a
plugin = 'plugins/b.wasm'
retries = 1

[tasks.a]
params.mode = "fast"
params.rows = 10
plugin = "plugins/a.wasm"
retries = 1

[defaults]
retry_delay = "30s"
"#;
    let reordered = format!("start_date = 2026-11-01\nschedule = \"  @DAILY \"\nid = \"v\"\n{reordered}");
    assert_eq!(dag(BASE).version(), dag(&reordered).version());
    let with_flow = BASE.replace("upstream = [\"a\"]", "").replace("[defaults]", "flow = [\"a >> b\"]\n[defaults]");
    assert_eq!(dag(BASE).version(), dag(&with_flow).version());
    let metadata = BASE.replace("[defaults]", "description = \"x\"\ntags = [\"t\"]\nowner = \"me\"\n[defaults]");
    assert_eq!(dag(BASE).version(), dag(&metadata).version());
}

#[test]
fn version_changes_with_behaviour() {
    let base = dag(BASE).version();
    let changed = [
        BASE.replace("rows = 10", "rows = 11"),
        BASE.replace("retries = 1", "retries = 2"),
        BASE.replace("plugins/a.wasm", "plugins/a2.wasm"),
        BASE.replace("@daily", "@hourly"),
        BASE.replace("2026-11-01", "2026-11-02"),
        BASE.replace("upstream = [\"a\"]", ""),
        BASE.replace("[defaults]", "catchup = true\n[defaults]"),
    ];
    for text in &changed {
        assert_ne!(dag(text).version(), base, "{text}");
    }
}

#[test]
fn version_follows_the_plugin_id_not_the_path() {
    let text = "id = \"p\"\n[tasks.a]\nplugin = \"plugins/a.wasm\"\n";
    let pinned = |plugin_id: &'static str| {
        let parsed = parse_dag("t.toml", text, &Caps::default(), &mut |_| Ok(plugin_id.to_owned()));
        parsed.expect("valid").version()
    };
    let other = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_ne!(pinned(ID), pinned(other));
    let by_id = format!("id = \"p\"\n[tasks.a]\nplugin = \"{ID}\"\n");
    assert_eq!(pinned(ID), dag(&by_id).version());
}

// ---- one test per rule ----

#[test]
fn toml_syntax() {
    assert_eq!(errors("id = \"x\nschedule = 3"), ["1:8: invalid basic string, expected `\"`"]);
    assert_eq!(errors(&format!("id = \"x\"\n{}{}", tasks(&["a"]), tasks(&["a"])))[0], "4:8: duplicate key \"a\"");
}

#[test]
fn unknown_fields_name_the_accepted_ones() {
    let found = errors(&format!("id = \"x\"\nowners = \"me\"\n{}retrys = 2\n", tasks(&["a"])));
    assert_eq!(found.len(), 2);
    let expected = "2:1: owners: unknown field \"owners\", expected one of \"id\", ";
    assert!(found[0].starts_with(expected));
    assert!(found[1].starts_with("5:1: tasks.a.retrys: unknown field \"retrys\", expected one of \"plugin\", "));
    assert!(found[1].contains("\"retries\""));
}

#[test]
fn wrong_types() {
    let found = errors(&format!("id = 5\ncatchup = \"no\"\n{}retries = 1.5\n", tasks(&["a"])));
    assert_eq!(
        found,
        [
            "1:6: id: expected a string, found an integer",
            "2:11: catchup: expected a boolean, found a string",
            "5:11: tasks.a.retries: expected an integer, found a float",
        ]
    );
}

#[test]
fn missing_id_and_plugin() {
    let found = errors("[tasks.a]\nparams = {}\n");
    assert_eq!(
        found,
        ["1:1: id: missing required field \"id\"", "1:8: tasks.a.plugin: missing required field \"plugin\""]
    );
}

#[test]
fn bad_id_characters() {
    let found = errors("id = \"a b\"\n[tasks.\"c/d\"]\nplugin = \"c.wasm\"\n");
    assert_eq!(found.len(), 2);
    assert!(found[0].starts_with("1:6: id: invalid id \"a b\""));
    assert!(found[1].starts_with("2:8: tasks.\"c/d\": invalid task id \"c/d\""));
}

#[test]
fn a_dag_needs_tasks() {
    assert_eq!(errors("id = \"x\"\n"), ["1:1: tasks: a DAG needs at least one task: add a [tasks.<id>] table"]);
    assert_eq!(
        errors("id = \"x\"\n[tasks]\n")[0],
        "2:1: tasks: a DAG needs at least one task: add a [tasks.<id>] table"
    );
}

#[test]
fn unknown_upstream_ids() {
    let text = format!("id = \"x\"\nflow = [\"a >> nope\"]\n{}upstream = [\"gone\"]\n", tasks(&["a"]));
    assert_eq!(
        errors(&text),
        ["2:15: flow[0]: unknown task \"nope\"", "5:13: tasks.a.upstream[0]: unknown task \"gone\""]
    );
}

#[test]
fn a_task_upstream_of_itself() {
    let text = format!("id = \"x\"\nflow = [\"[a] >> a\"]\n{}upstream = [\"a\"]\n", tasks(&["a"]));
    assert_eq!(
        errors(&text),
        [
            "2:14: flow[0]: task \"a\" cannot be upstream of itself",
            "5:13: tasks.a.upstream[0]: task \"a\" cannot be upstream of itself",
        ]
    );
}

#[test]
fn cycles_name_their_path() {
    let text =
        format!("id = \"x\"\nflow = [\"a >> b >> c >> a\", \"d >> e >> d\"]\n{}", tasks(&["a", "b", "c", "d", "e"]));
    assert_eq!(errors(&text), ["2:22: flow[0]: cycle: a -> b -> c -> a", "2:37: flow[1]: cycle: d -> e -> d"]);
}

#[test]
fn bad_cron() {
    let found = errors(&format!("id = \"x\"\nschedule = \"0 3 * * * * *\"\n{}", tasks(&["a"])));
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("2:12: schedule: invalid cron expression \"0 3 * * * * *\""));
    let found = errors(&format!("id = \"x\"\nschedule = \"0 3 * * MOON\"\n{}", tasks(&["a"])));
    assert!(found[0].starts_with("2:12: schedule: invalid cron expression \"0 3 * * MOON\": "), "{found:?}");
    let found = errors(&format!("id = \"x\"\nschedule = \"@fortnightly\"\n{}", tasks(&["a"])));
    assert!(found[0].starts_with("2:12: schedule: unknown schedule \"@fortnightly\""));
}

#[test]
fn bad_dates() {
    let found = errors(&format!("id = \"x\"\nstart_date = \"2026-02-30\"\nend_date = 07:00:00\n{}", tasks(&["a"])));
    assert_eq!(found.len(), 2);
    assert!(found[0].starts_with("2:14: start_date: invalid date \"2026-02-30\""));
    assert_eq!(found[1], "3:12: end_date: expected a date, found the time of day 07:00:00");
}

#[test]
fn end_date_before_start_date() {
    let text = format!("id = \"x\"\nstart_date = \"2026-11-02\"\nend_date = \"2026-11-01\"\n{}", tasks(&["a"]));
    assert_eq!(
        errors(&text),
        ["3:12: end_date: end_date 2026-11-01T00:00:00Z is before start_date 2026-11-02T00:00:00Z"]
    );
    let same = format!("id = \"x\"\nstart_date = \"2026-11-02\"\nend_date = \"2026-11-02\"\n{}", tasks(&["a"]));
    assert!(parse(&same).is_ok());
}

#[test]
fn bad_durations() {
    let text = format!("id = \"x\"\n{}retry_delay = \"30 parsecs\"\nmax_retry_delay = 5\n", tasks(&["a"]));
    let found = errors(&text);
    assert_eq!(found.len(), 2);
    assert!(found[0]
        .starts_with("4:15: tasks.a.retry_delay: invalid duration \"30 parsecs\": unknown time unit \"parsecs\""));
    assert!(found[1].starts_with("5:19: tasks.a.max_retry_delay: expected a duration string"));
}

#[test]
fn limits_over_the_caps_name_the_cap() {
    let caps = Caps { fuel: 100, memory_mb: 64, timeout: Duration::from_secs(60), max_retries: 3 };
    let text =
        "id = \"x\"\n[tasks.a]\nplugin = \"a.wasm\"\nfuel = 101\nmemory_mb = 65\ntimeout = \"61s\"\nretries = 4\n";
    let found = parse_dag("t.toml", text, &caps, &mut resolve).expect_err("over the caps");
    let messages: Vec<_> = found.iter().map(|d| (d.field.as_str(), d.message.as_str())).collect();
    assert_eq!(
        messages,
        [
            ("tasks.a.fuel", "101 exceeds the cap fuel = 100"),
            ("tasks.a.memory_mb", "65 exceeds the cap memory_mb = 64"),
            ("tasks.a.timeout", "1m 1s exceeds the cap timeout = 1m"),
            ("tasks.a.retries", "4 exceeds the cap max_retries = 3"),
        ]
    );
    let at_the_caps =
        "id = \"x\"\n[tasks.a]\nplugin = \"a.wasm\"\nfuel = 100\nmemory_mb = 64\ntimeout = \"60s\"\nretries = 3\n";
    assert!(parse_dag("t.toml", at_the_caps, &caps, &mut resolve).is_ok());
}

#[test]
fn a_default_over_a_cap_is_reported_once() {
    let text = format!("id = \"x\"\n[defaults]\nretries = 101\n{}", tasks(&["a", "b"]));
    assert_eq!(errors(&text), ["3:11: defaults.retries: 101 exceeds the cap max_retries = 100"]);
}

#[test]
fn zero_limits() {
    let text = format!("id = \"x\"\nmax_active_runs = 0\n{}fuel = 0\ntimeout = \"0s\"\n", tasks(&["a"]));
    assert_eq!(
        errors(&text),
        [
            "2:19: max_active_runs: must be at least 1, found 0",
            "5:8: tasks.a.fuel: must be at least 1, found 0",
            "6:11: tasks.a.timeout: must be longer than 0s",
        ]
    );
}

#[test]
fn unparseable_flow() {
    let text = format!("id = \"x\"\nflow = [\"a >> >> b\", \"[a, b >> c\", \"a >> b]\"]\n{}", tasks(&["a", "b", "c"]));
    assert_eq!(
        errors(&text),
        [
            "2:15: flow[0]: expected a task name or \"[\", found \">>\"",
            "2:23: flow[1]: unclosed \"[\"",
            "2:43: flow[2]: expected \">>\" or \"<<\", found \"]\"",
        ]
    );
}

#[test]
fn unresolved_plugins() {
    let text = "id = \"x\"\n[tasks.a]\nplugin = \"plugins/missing.wasm\"\n";
    assert_eq!(errors(text), ["3:10: tasks.a.plugin: no such file: plugins/missing.wasm"]);
    let bad_answer = parse_dag("t.toml", text, &Caps::default(), &mut |_| Ok("md5:abc".into()));
    let message = bad_answer.expect_err("a bad resolver answer")[0].message.clone();
    assert_eq!(message, "plugins/missing.wasm resolved to \"md5:abc\", which is not a \"sha256:\" plugin id");
}

#[test]
fn malformed_plugin_ids() {
    for bad in ["sha256:abc", &ID.to_uppercase().replace("SHA256", "sha256"), &format!("{ID}0")] {
        let found = errors(&format!("id = \"x\"\n[tasks.a]\nplugin = \"{bad}\"\n"));
        assert_eq!(
            found,
            [format!("3:10: tasks.a.plugin: invalid plugin id {bad:?}: expected \"sha256:\" followed by 64 lowercase hex digits")]
        );
    }
    assert!(is_plugin_id(ID));
}

#[test]
fn all_errors_at_once_in_file_order() {
    let text = "schedule = \"bad\"\n[tasks.a]\nretries = -1\nupstream = [\"zz\"]\n[tasks.b]\nplugin = 3\n";
    let fields: Vec<_> = parse(text).expect_err("broken").into_iter().map(|d| (d.line, d.field)).collect();
    assert_eq!(
        fields,
        [
            (1, "id".to_owned()),
            (1, "schedule".to_owned()),
            (2, "tasks.a.plugin".to_owned()),
            (3, "tasks.a.retries".to_owned()),
            (4, "tasks.a.upstream[0]".to_owned()),
            (6, "tasks.b.plugin".to_owned()),
        ]
    );
}

// ---- grants ----

#[test]
fn grants_are_read_normalised_and_enter_the_version() {
    let plain = dag("id = \"g\"\n[tasks.a]\nplugin = \"plugins/a.wasm\"\n");
    let granted = dag(r#"id = "g"
[tasks.a]
plugin = "plugins/a.wasm"
out_quota_mb = 64
mounts = ["datasets", "datasets"]
secrets = ["warehouse"]
allow_http = ["HTTPS://API.example.com/", "http://127.0.0.1:8099"]
record_http = true
"#);
    let grants = &granted.tasks[0].grants;
    assert_eq!(grants.out_quota_mb, Some(64));
    assert_eq!(grants.mounts, ["datasets"]);
    assert_eq!(grants.secrets, ["warehouse"]);
    assert_eq!(grants.allow_http, ["http://127.0.0.1:8099", "https://api.example.com"]);
    assert!(grants.record_http);
    assert!(plain.tasks[0].grants.is_default());
    assert_ne!(plain.version(), granted.version(), "more access is a new version");
    let fewer = dag(r#"id = "g"
[tasks.a]
plugin = "plugins/a.wasm"
out_quota_mb = 64
mounts = ["datasets"]
secrets = ["warehouse"]
allow_http = ["http://127.0.0.1:8099", "https://api.example.com"]
"#);
    assert_ne!(fewer.version(), granted.version(), "record_http is part of the version");
}

#[test]
fn bad_grants_are_refused_by_field() {
    let errs = errors(
        r#"id = "g"
[tasks.a]
plugin = "plugins/a.wasm"
mounts = ["Data-sets"]
secrets = ["x y"]
allow_http = ["api.example.com", "https://x/path"]
record_http = true
"#,
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(errs[0].contains("tasks.a.mounts: invalid mount name \"Data-sets\""), "{errs:#?}");
    assert!(errs[1].contains("tasks.a.secrets: invalid secret name"), "{errs:#?}");
    assert!(errs[2].contains("is not an origin"), "{errs:#?}");
    assert!(errs[3].contains("no path"), "{errs:#?}");
    assert!(errs[4].contains("record_http needs allow_http"), "{errs:#?}");
}

#[test]
fn the_policy_names_every_refusal() {
    let granted = dag(r#"id = "g"
[tasks.a]
plugin = "plugins/a.wasm"
out_quota_mb = 99999
mounts = ["datasets"]
secrets = ["warehouse"]
allow_http = ["https://api.example.com"]
"#);
    let refused = GrantPolicy::default().check(&granted).unwrap_err();
    assert_eq!(refused.len(), 4, "{refused:#?}");
    assert!(refused[0].starts_with("task \"a\": out_quota_mb 99999 is over"), "{refused:#?}");
    assert!(refused[1].contains("mounts set datasets PATH"), "{refused:#?}");
    assert!(refused[2].contains("secrets set warehouse"), "{refused:#?}");
    assert!(refused[3].contains("allows no HTTP egress"), "{refused:#?}");
    let policy = GrantPolicy {
        allow_http: vec!["https://api.example.com".into()],
        max_out_quota_mb: 100_000,
        mounts: ["datasets".to_string()].into(),
        secrets: ["warehouse".to_string()].into(),
        may_grant_secrets: true,
    };
    assert_eq!(policy.check(&granted), Ok(()));
    let viewer = GrantPolicy { may_grant_secrets: false, ..policy.clone() };
    let refused = viewer.check(&granted).unwrap_err();
    assert!(refused[0].contains("needs a role"), "{refused:#?}");
    let any = GrantPolicy { allow_http: vec!["*".into()], ..policy };
    assert_eq!(any.check(&granted), Ok(()));
}
