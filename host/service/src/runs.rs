//! Runs: trigger one (the active version, a pinned version, or an experiment's), list them page
//! by page, read one with its task instances, tries and logs, compare several.

use std::collections::BTreeMap;

use sandflow_core::state::RunState;
use sandflow_scheduler::TriggerOptions;
use sandflow_store::{RunCursor, RunQuery, RunRow, RunType, TaskInstanceRow, TryRow};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Result, Service, ServiceError};

/// A manual run to start.
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    pub conf: Map<String, Value>,
    pub note: Option<String>,
    /// Run this version instead of the active one.
    pub version: Option<String>,
    /// Run this experiment's version (its newest, unless `version` names one of its versions).
    pub experiment: Option<String>,
    /// Who starts it.
    pub by: crate::auth::Principal,
}

/// A started run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Triggered {
    #[serde(flatten)]
    pub run: RunRow,
    /// The DAG is paused: the run is queued and starts once it is unpaused.
    pub dag_paused: bool,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub dag_id: Option<String>,
    pub states: Vec<RunState>,
    pub run_type: Option<RunType>,
    pub experiment: Option<String>,
    pub triggered_by: Option<String>,
    pub oldest_first: bool,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass it back as `cursor` for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
    /// How many items match, every page together (when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

/// A run with its task instances.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunRow,
    pub tasks: Vec<TaskInstanceRow>,
    /// Every plugin id the run's version pins.
    pub plugin_ids: Vec<String>,
}

/// A piece of a try's log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogChunk {
    /// The log from `offset` on.
    pub text: String,
    /// The byte offset `text` starts at.
    pub offset: usize,
    /// The offset to ask for next.
    pub next_offset: usize,
    /// The try has ended: nothing more will be written.
    pub complete: bool,
}

/// Runs of one DAG side by side, task by task.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    pub dag_id: String,
    pub runs: Vec<RunRow>,
    pub tasks: Vec<ComparedTask>,
}

/// One task instance across the compared runs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComparedTask {
    pub task_id: String,
    pub map_index: i64,
    /// In the order of [`Comparison::runs`]; `None` where the run has no such instance.
    pub per_run: Vec<Option<ComparedInstance>>,
    /// The outputs are not all the same.
    pub output_differs: bool,
}

/// A task instance of one compared run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ComparedInstance {
    #[schema(value_type = String, example = "success")]
    pub state: sandflow_core::state::TaskState,
    pub tries: i64,
    /// Of the latest try.
    pub duration_s: Option<f64>,
    pub fuel_used: Option<i64>,
    pub peak_memory: Option<i64>,
    pub plugin_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<Map<String, Value>>,
    pub output: Option<Value>,
}

/// The largest number of runs one comparison takes.
pub const MAX_COMPARED: usize = 20;

impl Service {
    /// Starts a manual run. A paused DAG's run is queued all the same (it starts once unpaused),
    /// and the answer says it is paused.
    pub async fn trigger(&self, dag_id: &str, request: TriggerRequest) -> Result<Triggered> {
        let dag = self.dag_row(dag_id).await?;
        self.check_budget(&request.by.name).await?;
        let mut version = request.version;
        if let Some(name) = &request.experiment {
            let members: Vec<_> =
                self.store.experiments(dag_id).await?.into_iter().filter(|e| &e.name == name).collect();
            if members.is_empty() {
                return Err(ServiceError::NotFound {
                    what: "experiment",
                    id: name.clone(),
                    hint: format!(" of DAG `{dag_id}` (push one: sandflow bundle push DIR --experiment {name})"),
                });
            }
            match &version {
                None => version = Some(members[0].version.clone()),
                Some(v) if members.iter().any(|e| &e.version == v) => {}
                Some(v) => {
                    return Err(ServiceError::Invalid(format!(
                        "version {v} of DAG `{dag_id}` is not in experiment `{name}`"
                    )))
                }
            }
        }
        let options = TriggerOptions {
            conf: request.conf,
            note: request.note,
            triggered_by: request.by.name.clone(),
            audit: Some(request.by.audit(
                "dag.trigger",
                dag_id,
                serde_json::json!({"version": version, "experiment": request.experiment}),
            )),
            version,
            experiment: request.experiment,
        };
        let run = sandflow_scheduler::trigger(&self.store, dag_id, options).await?;
        self.store.notify(sandflow_store::Topic::Queued).await.ok();
        Ok(Triggered { run, dag_paused: dag.is_paused })
    }

    /// A page of runs, newest first unless asked otherwise, after `cursor` (from the previous
    /// page) or from `offset`.
    pub async fn list_runs(
        &self,
        filter: &RunFilter,
        limit: i64,
        cursor: Option<&str>,
        offset: i64,
        with_total: bool,
    ) -> Result<Page<RunRow>> {
        let after = cursor.map(decode_cursor).transpose()?;
        let limit = limit.clamp(1, sandflow_store::MAX_PAGE);
        let query = RunQuery {
            dag_id: filter.dag_id.clone(),
            states: filter.states.clone(),
            run_type: filter.run_type,
            experiment: filter.experiment.clone(),
            triggered_by: filter.triggered_by.clone(),
            oldest_first: filter.oldest_first,
            after,
            offset,
            limit,
        };
        let items = self.store.list_runs(&query).await?;
        let next_cursor = (items.len() as i64 == limit).then(|| items.last().map(encode_cursor)).flatten();
        let total = if with_total { Some(self.store.count_runs(&query).await?) } else { None };
        Ok(Page { items, next_cursor, total })
    }

    /// One run, or not found.
    pub async fn run_row(&self, run_id: &str) -> Result<RunRow> {
        self.store.run(run_id).await?.ok_or_else(|| ServiceError::not_found("run", run_id))
    }

    /// One run with its task instances.
    pub async fn run(&self, run_id: &str) -> Result<RunDetail> {
        let run = self.run_row(run_id).await?;
        let tasks = self.store.task_instances(run_id).await?;
        let parsed = self.version_of(&run.dag_id, &run.version).await?;
        let plugin_ids = sandflow_scheduler::plugin_ids(&parsed.1);
        Ok(RunDetail { run, tasks, plugin_ids })
    }

    /// The tries of one task instance, first first, without their logs.
    pub async fn tries(&self, run_id: &str, task_id: &str, map_index: i64) -> Result<Vec<TryRow>> {
        let tries = self.instance_tries(run_id, task_id, map_index).await?;
        Ok(tries.into_iter().map(|t| TryRow { log: None, ..t }).collect())
    }

    async fn instance_tries(&self, run_id: &str, task_id: &str, map_index: i64) -> Result<Vec<TryRow>> {
        self.run_row(run_id).await?;
        let instances = self.store.task_instances(run_id).await?;
        if !instances.iter().any(|ti| ti.task_id == task_id && ti.map_index == map_index) {
            let what = if map_index < 0 { task_id.to_string() } else { format!("{task_id}[{map_index}]") };
            return Err(ServiceError::NotFound {
                what: "task instance",
                id: what,
                hint: format!(" in run `{run_id}`"),
            });
        }
        Ok(self.store.tries(run_id, task_id, map_index).await?)
    }

    /// A try's log from byte `offset` on (moved forward to a character boundary).
    pub async fn try_log(
        &self,
        run_id: &str,
        task_id: &str,
        map_index: i64,
        try_number: i64,
        offset: usize,
    ) -> Result<LogChunk> {
        let tries = self.instance_tries(run_id, task_id, map_index).await?;
        let found = tries.into_iter().find(|t| t.try_number == try_number).ok_or_else(|| ServiceError::NotFound {
            what: "try",
            id: try_number.to_string(),
            hint: format!(" of {task_id} in run `{run_id}`"),
        })?;
        let log = found.log.unwrap_or_default();
        let mut start = offset.min(log.len());
        while !log.is_char_boundary(start) {
            start += 1;
        }
        Ok(LogChunk {
            text: log[start..].to_string(),
            offset: start,
            next_offset: log.len(),
            complete: found.outcome.is_some(),
        })
    }

    /// Runs of one DAG side by side: per task, state, duration, fuel, peak memory, metrics, and
    /// whether the outputs differ.
    pub async fn compare(&self, dag_id: &str, run_ids: &[String]) -> Result<Comparison> {
        self.dag_row(dag_id).await?;
        if run_ids.len() < 2 || run_ids.len() > MAX_COMPARED {
            return Err(ServiceError::Invalid(format!(
                "compare takes 2 to {MAX_COMPARED} runs, not {}",
                run_ids.len()
            )));
        }
        let mut runs = Vec::new();
        let mut rows: BTreeMap<(String, i64), Vec<Option<ComparedInstance>>> = BTreeMap::new();
        for (i, run_id) in run_ids.iter().enumerate() {
            let run = self.run_row(run_id).await?;
            if run.dag_id != dag_id {
                return Err(ServiceError::Invalid(format!(
                    "run `{run_id}` is a run of `{}`, not of `{dag_id}`",
                    run.dag_id
                )));
            }
            let mut latest: BTreeMap<(String, i64), TryRow> = BTreeMap::new();
            for t in self.store.run_tries(run_id).await? {
                let key = (t.task_id.clone(), t.map_index);
                if latest.get(&key).is_none_or(|l| l.try_number < t.try_number) {
                    latest.insert(key, t);
                }
            }
            for ti in self.store.task_instances(run_id).await? {
                let key = (ti.task_id.clone(), ti.map_index);
                let last = latest.get(&key);
                let instance = ComparedInstance {
                    state: ti.state,
                    tries: ti.try_number,
                    duration_s: last.and_then(|t| t.wall_us).map(|us| us as f64 / 1e6),
                    fuel_used: last.and_then(|t| t.fuel_used),
                    peak_memory: last.and_then(|t| t.peak_memory),
                    plugin_id: last.map(|t| t.plugin_id.clone()),
                    metrics: ti.metrics,
                    output: ti.output,
                };
                rows.entry(key).or_insert_with(|| vec![None; run_ids.len()])[i] = Some(instance);
            }
            runs.push(run);
        }
        let tasks = rows
            .into_iter()
            .map(|((task_id, map_index), per_run)| {
                let first = per_run.first().and_then(|p| p.as_ref().map(|i| i.output.clone()));
                let output_differs = per_run.iter().any(|p| p.as_ref().map(|i| i.output.clone()) != first);
                ComparedTask { task_id, map_index, per_run, output_differs }
            })
            .collect();
        Ok(Comparison { dag_id: dag_id.to_string(), runs, tasks })
    }
}

/// A page's cursor: the last row's creation time and id, as opaque text.
fn encode_cursor(row: &RunRow) -> String {
    let nanos = row.created_at.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let text = format!("{nanos}|{}", row.run_id);
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(text: &str) -> Result<RunCursor> {
    let bad = || {
        ServiceError::Invalid(format!(
            "cursor {:?} is not one this server gave",
            sandflow_core::text::shorten(text, 40)
        ))
    };
    if !text.len().is_multiple_of(2) || text.len() > 4096 {
        return Err(bad());
    }
    let bytes: Option<Vec<u8>> =
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect();
    let text = String::from_utf8(bytes.ok_or_else(bad)?).map_err(|_| bad())?;
    let (nanos, run_id) = text.split_once('|').ok_or_else(bad)?;
    let created_at = chrono::DateTime::from_timestamp_nanos(nanos.parse().map_err(|_| bad())?);
    Ok(RunCursor { created_at, run_id: run_id.to_string() })
}
