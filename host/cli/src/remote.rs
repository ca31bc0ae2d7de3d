//! Commands against a server (`--server URL`, `SANDFLOW_SERVER`): the CLI then never opens a
//! database; it asks the HTTP API and prints the answers as the local commands print theirs.

use serde_json::{json, Value};

use crate::client::{encode, wait_for_run, Client};
use crate::dags_cmd::DagsCmd;
use crate::out::{errln, outln};
use crate::{table, CliError};

/// `sandflow dags ...` over HTTP.
pub async fn dags(cmd: DagsCmd, client: &Client) -> Result<(), CliError> {
    match cmd {
        DagsCmd::List { json } => {
            let listed = client.get("/api/v1/dags?limit=1000").await?;
            let errors = client.get("/api/v1/import-errors").await?;
            if json {
                return Ok(table::json(&json!({"dags": listed["items"], "import_errors": errors["items"]}))?);
            }
            let rows: Vec<Vec<String>> = listed["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let last = &d["last_run"];
                    vec![
                        text(&d["dag_id"]),
                        text(&d["active_version"]),
                        d["schedule"].as_str().unwrap_or("manual").to_string(),
                        if d["is_paused"] == true { "yes" } else { "no" }.to_string(),
                        if last.is_null() {
                            "-".to_string()
                        } else {
                            format!("{} {}", text(&last["state"]), text(&last["run_id"]))
                        },
                    ]
                })
                .collect();
            table::print(&["dag_id", "version", "schedule", "paused", "last run"], &rows);
            for error in errors["items"].as_array().into_iter().flatten() {
                outln!(
                    "\nimport error in {}:\n{}",
                    text(&error["file_path"]),
                    crate::app::indent(&text(&error["message"]))
                );
            }
            Ok(())
        }
        DagsCmd::Show { dag_id, json } => {
            let dag = client.get(&format!("/api/v1/dags/{}", encode(&dag_id))).await?;
            let runs = client.get(&format!("/api/v1/dags/{}/runs?limit=10", encode(&dag_id))).await?;
            if json {
                return Ok(table::json(&json!({"dag": dag, "runs": runs["items"]}))?);
            }
            outln!("dag:      {}", text(&dag["dag_id"]));
            outln!(
                "version:  {} ({} in all)",
                text(&dag["active_version"]),
                dag["versions"].as_array().map_or(0, Vec::len)
            );
            outln!("schedule: {}", dag["schedule"].as_str().unwrap_or("manual"));
            outln!("paused:   {}", if dag["is_paused"] == true { "yes" } else { "no" });
            outln!();
            let tasks: Vec<Vec<String>> = dag["tasks_detail"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let upstream: Vec<String> = t["upstream"].as_array().into_iter().flatten().map(text).collect();
                    vec![
                        text(&t["task_id"]),
                        upstream.join(","),
                        text(&t["trigger_rule"]),
                        t["retries"].to_string(),
                        text(&t["plugin_id"]).chars().take(19).collect(),
                    ]
                })
                .collect();
            table::print(&["task", "upstream", "trigger_rule", "retries", "plugin"], &tasks);
            outln!();
            let versions: Vec<Vec<String>> = dag["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let experiments: Vec<String> =
                        v["experiments"].as_array().into_iter().flatten().map(|e| text(&e["name"])).collect();
                    vec![
                        text(&v["version"]),
                        if v["is_active"] == true { "active" } else { "" }.to_string(),
                        text(&v["origin"]),
                        v["uploaded_by"].as_str().unwrap_or("-").to_string(),
                        experiments.join(","),
                        text(&v["created_at"]),
                    ]
                })
                .collect();
            table::print(&["version", "", "origin", "by", "experiments", "created"], &versions);
            outln!();
            let runs: Vec<Vec<String>> = runs["items"].as_array().into_iter().flatten().map(run_row).collect();
            table::print(&["run", "state", "version", "experiment", "by"], &runs);
            Ok(())
        }
        DagsCmd::Trigger { dag_id, conf, note, dag_version, experiment, wait, json } => {
            let conf = crate::app::conf(conf.as_deref())?;
            let body = json!({"conf": conf, "note": note, "dag_version": dag_version, "experiment": experiment});
            let run = client.post(&format!("/api/v1/dags/{}/runs", encode(&dag_id)), &body).await?;
            let run_id = text(&run["run_id"]);
            if json {
                table::json(&run)?;
            } else {
                let paused =
                    if run["dag_paused"] == true { "; the DAG is paused: it starts once unpaused" } else { "" };
                outln!("created run {run_id} of {dag_id} (version {}, queued{paused})", text(&run["version"]));
            }
            if !wait {
                return Ok(());
            }
            let state = wait_for_run(client, &run_id, |event, data| {
                if event == "task" && !json {
                    let name = match data["map_index"].as_i64() {
                        Some(i) if i >= 0 => format!("{}[{i}]", text(&data["task_id"])),
                        _ => text(&data["task_id"]),
                    };
                    errln!("{name}: {}", text(&data["state"]));
                }
            })
            .await?;
            match state.as_str() {
                "success" => {
                    if !json {
                        outln!("run {run_id} success");
                    }
                    Ok(())
                }
                other => Err(CliError::Failed(format!("run {run_id} {other}"))),
            }
        }
        DagsCmd::Pause { dag_id } => pause(client, &dag_id, true).await,
        DagsCmd::Unpause { dag_id } => pause(client, &dag_id, false).await,
        DagsCmd::Backfill { dag_id, from, to, rerun_failed } => {
            let (from, to) = (crate::app::date(&from, "--from")?, crate::app::date(&to, "--to")?);
            if to < from {
                return Err(CliError::Usage(anyhow::anyhow!("--to {to} is before --from {from}")));
            }
            let body = json!({"from": from, "to": to, "rerun_failed": rerun_failed});
            let report = client.post(&format!("/api/v1/dags/{}/backfill", encode(&dag_id)), &body).await?;
            outln!(
                "backfill of {dag_id}: {} intervals from {} to {}: {} runs created, {} failed runs cleared to rerun, {} already ran",
                report["intervals"], text(&report["first"]), text(&report["last"]),
                report["created"], report["rerun"], report["skipped"]
            );
            let run_ids: Vec<String> = report["run_ids"].as_array().into_iter().flatten().map(text).collect();
            let started = std::time::Instant::now();
            let (mut success, mut failed) = (0, 0);
            // The server's scheduler runs them; this follows each to its end, in order.
            for run_id in &run_ids {
                match wait_for_run(client, run_id, |_, _| {}).await?.as_str() {
                    "success" => success += 1,
                    _ => failed += 1,
                }
            }
            if run_ids.is_empty() {
                return Ok(());
            }
            let elapsed = sandflow_sandbox::human_duration(started.elapsed());
            outln!("backfill of {dag_id} done in {elapsed}: {success} runs succeeded, {failed} failed");
            if failed > 0 {
                return Err(CliError::Failed(format!(
                    "{failed} backfill runs failed (see: sandflow dags show {dag_id})"
                )));
            }
            Ok(())
        }
        DagsCmd::Clear { dag_id, from, to, only_failed } => {
            let (from, to) = (crate::app::date(&from, "--from")?, crate::app::date(&to, "--to")?);
            let body = json!({"from": from, "to": to, "only_failed": only_failed});
            let done = client.post(&format!("/api/v1/dags/{}/clear", encode(&dag_id)), &body).await?;
            outln!("{}", text(&done["result"]));
            Ok(())
        }
        DagsCmd::Mark { dag_id, run, state } => {
            let run = find_run(client, &dag_id, &run).await?;
            let state = match state {
                crate::tasks_cmd::MarkArg::Success => "success",
                crate::tasks_cmd::MarkArg::Failed => "failed",
            };
            let done = client
                .post(&format!("/api/v1/runs/{}/mark", encode(&text(&run["run_id"]))), &json!({"state": state}))
                .await?;
            outln!("{}", text(&done["result"]));
            Ok(())
        }
        DagsCmd::Load { .. } => Err(CliError::Usage(anyhow::anyhow!(
            "`dags load` reads a DAG folder into a database: to a server, push it instead (sandflow bundle push DIR)"
        ))),
        DagsCmd::Test { .. } => Err(CliError::Usage(anyhow::anyhow!(
            "`dags test` runs a DAG in this process from a DAG folder: run it without --server"
        ))),
    }
}

async fn pause(client: &Client, dag_id: &str, paused: bool) -> Result<(), CliError> {
    let verb = if paused { "pause" } else { "unpause" };
    let answer = client.post(&format!("/api/v1/dags/{}/{verb}", encode(dag_id)), &json!({})).await?;
    let state = if paused { "paused" } else { "unpaused" };
    let already = if answer["already"] == true { " (it already was)" } else { "" };
    outln!("{dag_id} is {state}{already}");
    Ok(())
}

fn text(value: &Value) -> String {
    let raw = match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    sandflow_core::text::clean(&raw, false).into_owned()
}

fn run_row(r: &Value) -> Vec<String> {
    vec![
        text(&r["run_id"]),
        text(&r["state"]),
        text(&r["version"]),
        r["experiment"].as_str().unwrap_or("-").to_string(),
        text(&r["triggered_by"]),
    ]
}

/// Prints a comparison (the API's or the service's, as JSON) as a table: per task, each run's
/// state, duration and fuel, and whether the outputs differ.
pub fn print_comparison(cmp: &Value) {
    let runs: Vec<&Value> = cmp["runs"].as_array().into_iter().flatten().collect();
    for (i, run) in runs.iter().enumerate() {
        let experiment = run["experiment"].as_str().map(|e| format!(", experiment {e}")).unwrap_or_default();
        outln!(
            "run {}: {} ({}, version {}{experiment}, by {})",
            (b'A' + i as u8) as char,
            text(&run["run_id"]),
            text(&run["state"]),
            text(&run["version"]),
            text(&run["triggered_by"])
        );
    }
    outln!();
    let mut header = vec!["task".to_string()];
    for i in 0..runs.len() {
        let letter = (b'A' + i as u8) as char;
        header.extend([format!("state {letter}"), format!("time {letter}"), format!("fuel {letter}")]);
    }
    header.push("output".to_string());
    let rows: Vec<Vec<String>> = cmp["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let name = match t["map_index"].as_i64() {
                Some(i) if i >= 0 => format!("{}[{i}]", text(&t["task_id"])),
                _ => text(&t["task_id"]),
            };
            let mut row = vec![name];
            for p in t["per_run"].as_array().into_iter().flatten() {
                if p.is_null() {
                    row.extend(["-".to_string(), "-".to_string(), "-".to_string()]);
                } else {
                    let time = p["duration_s"].as_f64().map_or("-".to_string(), |s| format!("{:.3}s", s));
                    row.extend([
                        text(&p["state"]),
                        time,
                        p["fuel_used"].as_i64().map_or("-".to_string(), |f| f.to_string()),
                    ]);
                }
            }
            row.push(if t["output_differs"] == true { "differs" } else { "same" }.to_string());
            row
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table::print(&header, &rows);
}

/// A run by id, or `latest` for the DAG's newest, through the API.
pub(crate) async fn find_run(client: &Client, dag_id: &str, run: &str) -> Result<Value, CliError> {
    if run == "latest" {
        let page = client.get(&format!("/api/v1/dags/{}/runs?limit=1", encode(dag_id))).await?;
        let Some(first) = page["items"].as_array().and_then(|items| items.first()) else {
            return Err(CliError::Usage(anyhow::anyhow!("DAG `{dag_id}` has no runs yet")));
        };
        return client.get(&format!("/api/v1/runs/{}", encode(&text(&first["run_id"])))).await;
    }
    let found = client.get(&format!("/api/v1/runs/{}", encode(run))).await?;
    if found["dag_id"].as_str() != Some(dag_id) {
        return Err(CliError::Usage(anyhow::anyhow!("DAG `{dag_id}` has no run `{run}`")));
    }
    Ok(found)
}

/// `sandflow tasks ...` over HTTP.
pub async fn tasks(cmd: crate::tasks_cmd::TasksCmd, client: &Client) -> Result<(), CliError> {
    use crate::tasks_cmd::TasksCmd;
    match cmd {
        TasksCmd::List { dag_id, run, json } => {
            let run = find_run(client, &dag_id, &run).await?;
            if json {
                return Ok(table::json(&json!({"run": run, "task_instances": run["tasks"]}))?);
            }
            outln!("run {} ({})", text(&run["run_id"]), text(&run["state"]));
            let rows: Vec<Vec<String>> = run["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let index = t["map_index"].as_i64().filter(|i| *i >= 0).map_or(String::new(), |i| i.to_string());
                    vec![
                        text(&t["task_id"]),
                        index,
                        text(&t["state"]),
                        t["try_number"].to_string(),
                        t["reason"]
                            .as_str()
                            .map_or(String::new(), |r| sandflow_core::text::clean(r, false).into_owned()),
                    ]
                })
                .collect();
            table::print(&["task", "map", "state", "tries", "reason"], &rows);
            Ok(())
        }
        TasksCmd::Tries { dag_id, run, task_id, map_index, json } => {
            let run = find_run(client, &dag_id, &run).await?;
            let path = format!(
                "/api/v1/runs/{}/tasks/{}/tries?map_index={map_index}",
                encode(&text(&run["run_id"])),
                encode(&task_id)
            );
            let tries = client.get(&path).await?;
            if json {
                return Ok(table::json(&tries["items"])?);
            }
            let rows: Vec<Vec<String>> = tries["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    vec![
                        t["try_number"].to_string(),
                        t["outcome"].as_str().unwrap_or("running").to_string(),
                        t["fuel_used"].to_string(),
                        t["peak_memory"].to_string(),
                        t["wall_us"].as_i64().map_or("-".into(), |us| format!("{:.3}s", us as f64 / 1e6)),
                        text(&t["plugin_id"]).chars().take(19).collect(),
                        text(&t["message"]),
                    ]
                })
                .collect();
            table::print(&["try", "outcome", "fuel", "peak memory", "wall", "plugin", "message"], &rows);
            Ok(())
        }
        TasksCmd::Logs { dag_id, run, task_id, try_number, map_index } => {
            let run = find_run(client, &dag_id, &run).await?;
            let run_id = encode(&text(&run["run_id"]));
            let tries = client
                .get(&format!("/api/v1/runs/{run_id}/tasks/{}/tries?map_index={map_index}", encode(&task_id)))
                .await?;
            let last = tries["items"].as_array().and_then(|t| t.last()).and_then(|t| t["try_number"].as_i64());
            let Some(number) = try_number.or(last) else {
                return Err(CliError::Usage(anyhow::anyhow!("task `{task_id}` has not been tried yet")));
            };
            let path =
                format!("/api/v1/runs/{run_id}/tasks/{}/tries/{number}/log?map_index={map_index}", encode(&task_id));
            let log = client.get(&path).await?;
            errln!("try {number} of {task_id}");
            for line in log["text"].as_str().unwrap_or("").lines() {
                outln!("{}", sandflow_core::text::clean(line, false));
            }
            Ok(())
        }
        TasksCmd::Clear { dag_id, run, task_id, downstream, upstream, only_failed, map_index } => {
            let run = find_run(client, &dag_id, &run).await?;
            let body = json!({"task_ids": task_id.into_iter().collect::<Vec<_>>(), "map_index": map_index,
                "downstream": downstream, "upstream": upstream, "only_failed": only_failed});
            let done = client.post(&format!("/api/v1/runs/{}/clear", encode(&text(&run["run_id"]))), &body).await?;
            outln!("{}", text(&done["result"]));
            Ok(())
        }
        TasksCmd::Mark { dag_id, run, task_id, state, map_index } => {
            let run = find_run(client, &dag_id, &run).await?;
            let state = match state {
                crate::tasks_cmd::MarkArg::Success => "success",
                crate::tasks_cmd::MarkArg::Failed => "failed",
            };
            let body = json!({"state": state, "task_id": task_id, "map_index": map_index});
            let done = client.post(&format!("/api/v1/runs/{}/mark", encode(&text(&run["run_id"]))), &body).await?;
            outln!("{}", text(&done["result"]));
            Ok(())
        }
        TasksCmd::Artifacts { .. } => Err(CliError::Usage(anyhow::anyhow!(
            "tasks artifacts reads the server's store and artifacts: run it on the server's machine, without --server"
        ))),
        // main.rs runs it with this machine's sandbox over the client (replay_cmd::replay).
        TasksCmd::Replay { .. } => Err(CliError::Usage(anyhow::anyhow!("tasks replay over HTTP runs from main"))),
        TasksCmd::Test { .. } => Err(CliError::Usage(anyhow::anyhow!(
            "`tasks test` runs a task in this process from a DAG folder: run it without --server"
        ))),
    }
}

/// `sandflow pools ...` over HTTP.
pub async fn pools(cmd: crate::pools_cmd::PoolsCmd, client: &Client) -> Result<(), CliError> {
    use crate::pools_cmd::PoolsCmd;
    match cmd {
        PoolsCmd::Set { name, slots, description } => {
            let put = client
                .put(&format!("/api/v1/pools/{}", encode(&name)), &json!({"slots": slots, "description": description}))
                .await?;
            outln!("pool {} has {} slots", text(&put["name"]), put["slots"]);
            Ok(())
        }
        PoolsCmd::List { json } => {
            let pools = client.get("/api/v1/pools").await?;
            if json {
                return Ok(table::json(&pools["items"])?);
            }
            let rows: Vec<Vec<String>> = pools["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    vec![text(&p["name"]), p["slots"].to_string(), p["description"].as_str().unwrap_or("").to_string()]
                })
                .collect();
            table::print(&["pool", "slots", "description"], &rows);
            Ok(())
        }
        PoolsCmd::Delete { name } => {
            client.delete(&format!("/api/v1/pools/{}", encode(&name))).await?;
            outln!("pool {name} deleted");
            Ok(())
        }
    }
}

/// `sandflow plugin ...` over HTTP: add (upload), inspect (by id, or a file's id), list.
pub async fn plugins(cmd: crate::plugin_cmd::PluginCmd, client: &Client) -> Result<(), CliError> {
    use crate::plugin_cmd::PluginCmd;
    match cmd {
        PluginCmd::Add { file } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| CliError::Usage(anyhow::anyhow!("reading {}: {e}", file.display())))?;
            let uploaded = client.post_bytes("/api/v1/plugins", "application/wasm", bytes).await?;
            let known = if uploaded["new"] == true { "" } else { " (the server already had it)" };
            outln!("{}{known}", text(&uploaded["plugin_id"]));
            Ok(())
        }
        PluginCmd::Inspect { plugin, json } => {
            // A file is named by its id: the server is asked about those bytes.
            let id = if plugin.starts_with("sha256:") {
                plugin
            } else {
                let bytes =
                    std::fs::read(&plugin).map_err(|e| CliError::Usage(anyhow::anyhow!("reading {plugin}: {e}")))?;
                sandflow_sandbox::PluginId::of(&bytes).to_string()
            };
            let detail = client.get(&format!("/api/v1/plugins/{}", encode(&id))).await?;
            if json {
                return Ok(table::json(&detail)?);
            }
            outln!("id:       {}", text(&detail["id"]));
            outln!("kind:     {}", text(&detail["kind"]));
            outln!("size:     {} bytes", detail["size"]);
            outln!("added:    {}", text(&detail["created_at"]));
            let used: Vec<Vec<String>> = detail["used_by"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| vec![text(&v["dag_id"]), text(&v["version"]), text(&v["created_at"])])
                .collect();
            if used.is_empty() {
                outln!("used by:  no DAG version");
            } else {
                outln!("used by:");
                table::print(&["dag", "version", "created"], &used);
            }
            Ok(())
        }
        PluginCmd::List { json } => {
            let list = client.get("/api/v1/plugins").await?;
            if json {
                return Ok(table::json(&list["items"])?);
            }
            let rows: Vec<Vec<String>> = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| vec![text(&p["id"]), text(&p["kind"]), p["size"].to_string(), text(&p["created_at"])])
                .collect();
            table::print(&["id", "kind", "size", "added"], &rows);
            Ok(())
        }
        PluginCmd::Run { .. } | PluginCmd::Test { .. } | PluginCmd::New { .. } => {
            Err(CliError::Usage(anyhow::anyhow!(
                "`plugin run`, `plugin test` and `plugin new` work in this process: run them without --server"
            )))
        }
    }
}
