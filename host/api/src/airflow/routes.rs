//! The `/api/v2` handlers: read the request as Airflow's client sends it, call Sandflow's
//! service, answer with [`super::models`].

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use sandflow_core::state::RunState;
use sandflow_scheduler::actions::{Action, MarkState};
use sandflow_service::dags::{DagFilter, TaskView};
use sandflow_service::runs::{RunFilter, TriggerRequest};
use sandflow_service::ServiceError;
use sandflow_store::{RunRow, TryRow};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::models::{
    Dag, DagCollection, DagRun, DagRunCollection, TaskInstance, TaskInstanceCollection, TaskLog, VersionNumbers,
};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::AppState;

/// A query string's parameters, repeated ones kept (`?update_mask=a&update_mask=b`).
struct Params(Vec<(String, String)>);

impl Params {
    fn of(query: Option<String>) -> Params {
        Params(form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.all(key).into_iter().next()
    }

    fn number(&self, key: &str, default: i64) -> ApiResult<i64> {
        match self.one(key) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| ApiError::BadRequest(format!("{key}: not a number: {text:?}"))),
        }
    }

    fn flag(&self, key: &str) -> ApiResult<Option<bool>> {
        match self.one(key) {
            None => Ok(None),
            Some("true" | "True" | "1") => Ok(Some(true)),
            Some("false" | "False" | "0") => Ok(Some(false)),
            Some(other) => Err(ApiError::BadRequest(format!("{key}: not a boolean: {other:?}"))),
        }
    }
}

/// `~` in a path: every DAG (or every run).
fn any(id: &str) -> Option<&str> {
    (id != "~").then_some(id)
}

/// `GET /api/v2/version`.
#[utoipa::path(get, path = "/api/v2/version", tag = "airflow",
    responses((status = 200, description = "Airflow's VersionInfo: `version`, `git_version`", body = Object)))]
pub(crate) async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION"), "git_version": null, "sandflow": true}))
}

/// `GET /api/v2/monitor/health`.
#[utoipa::path(get, path = "/api/v2/monitor/health", tag = "airflow",
    responses((status = 200, description = "Airflow's HealthInfoResponse", body = Object)))]
pub(crate) async fn health(State(state): State<AppState>) -> Json<Value> {
    let store = state.service.store();
    let schedulers = store.live_schedulers(std::time::Duration::from_secs(3600)).await;
    let newest = schedulers.as_ref().ok().and_then(|s| s.iter().map(|s| s.heartbeat_at).max());
    let healthy = newest.is_some_and(|at| {
        (chrono::Utc::now() - at).to_std().unwrap_or_default() < sandflow_scheduler::actions::HEARTBEAT_VALID_FOR
    });
    let status = |ok: bool| if ok { "healthy" } else { "unhealthy" };
    Json(json!({
        "metadatabase": {"status": status(schedulers.is_ok())},
        "scheduler": {"status": status(healthy), "latest_scheduler_heartbeat": newest.map(|t| t.to_rfc3339())},
        "triggerer": {"status": null, "latest_triggerer_heartbeat": null},
        "dag_processor": {"status": status(schedulers.is_ok()), "latest_dag_processor_heartbeat": null},
    }))
}

/// `GET /api/v2/dags?limit=&offset=&tags=&paused=&dag_id_pattern=`.
#[utoipa::path(get, path = "/api/v2/dags", tag = "airflow",
    responses((status = 200, description = "Airflow's DAGCollectionResponse", body = DagCollection)))]
pub(crate) async fn dags(State(state): State<AppState>, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    let params = Params::of(query);
    let (limit, offset) = (params.number("limit", 50)?, params.number("offset", 0)?);
    let filter = DagFilter { paused: params.flag("paused")?, ..DagFilter::default() };
    let tags = params.all("tags");
    let pattern = params.one("dag_id_pattern").map(|p| p.trim_matches('%').to_lowercase());
    let dags: Vec<_> = state
        .service
        .list_dags(&filter)
        .await?
        .into_iter()
        .filter(|d| tags.is_empty() || d.tags.iter().any(|t| tags.contains(&t.as_str())))
        .filter(|d| pattern.as_ref().is_none_or(|p| p == "~" || d.dag_id.to_lowercase().contains(p.as_str())))
        .collect();
    let total = dags.len() as i64;
    let page = dags.iter().skip(offset.max(0) as usize).take(limit.clamp(0, 1000) as usize).map(Dag::from).collect();
    Ok(Json(json!(DagCollection { dags: page, total_entries: total })))
}

async fn dag(state: &AppState, dag_id: &str) -> ApiResult<Dag> {
    Ok(Dag::from(&state.service.dag(dag_id).await?.summary))
}

/// `GET /api/v2/dags/{dag_id}`.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}", tag = "airflow", params(("dag_id" = String, Path)),
    responses((status = 200, description = "Airflow's DAGResponse", body = Dag)))]
pub(crate) async fn get_dag(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(dag(&state, &dag_id).await?)))
}

#[derive(Deserialize)]
pub(crate) struct DagPatch {
    is_paused: Option<bool>,
}

/// `PATCH /api/v2/dags/{dag_id}?update_mask=is_paused` `{"is_paused"}`.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}", tag = "airflow", params(("dag_id" = String, Path)),
    request_body = Object, responses((status = 200, description = "Airflow's DAGResponse", body = Dag)))]
pub(crate) async fn patch_dag(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
    Caller(by): Caller,
    JsonBody(body): JsonBody<DagPatch>,
) -> ApiResult<Json<Value>> {
    let params = Params::of(query);
    let mask = params.all("update_mask");
    if let Some(field) = mask.iter().find(|f| **f != "is_paused") {
        return Err(ApiError::BadRequest(format!("update_mask {field:?}: only is_paused can be changed")));
    }
    let paused = body.is_paused.ok_or_else(|| ApiError::BadRequest("is_paused: a boolean is required".into()))?;
    state.service.set_paused(&dag_id, paused, &by).await?;
    Ok(Json(json!(dag(&state, &dag_id).await?)))
}

async fn versions(state: &AppState, dag_id: &str) -> ApiResult<VersionNumbers> {
    Ok(VersionNumbers(state.service.store().dag_versions(dag_id).await?))
}

/// Runs answered with each DAG's version numbers, read once a DAG.
async fn runs_answer(state: &AppState, runs: &[RunRow]) -> ApiResult<Vec<DagRun>> {
    let mut numbers: HashMap<String, VersionNumbers> = HashMap::new();
    let mut answer = Vec::with_capacity(runs.len());
    for run in runs {
        if !numbers.contains_key(&run.dag_id) {
            numbers.insert(run.dag_id.clone(), versions(state, &run.dag_id).await?);
        }
        answer.push(DagRun::of(run, &numbers[&run.dag_id]));
    }
    Ok(answer)
}

/// `GET /api/v2/dags/{dag_id}/dagRuns?limit=&offset=&state=&order_by=` (`~`: every DAG).
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "airflow", params(("dag_id" = String, Path)),
    responses((status = 200, description = "Airflow's DAGRunCollectionResponse", body = DagRunCollection)))]
pub(crate) async fn dag_runs(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::of(query);
    let (limit, offset) = (params.number("limit", 50)?, params.number("offset", 0)?);
    if let Some(dag_id) = any(&dag_id) {
        state.service.dag(dag_id).await?;
    }
    let states = params
        .all("state")
        .into_iter()
        .map(|s| s.parse::<RunState>().map_err(|e| ApiError::BadRequest(format!("state: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let oldest_first = match params.one("order_by") {
        None | Some("-run_after" | "-logical_date" | "-start_date" | "-id") => false,
        Some("run_after" | "logical_date" | "start_date" | "id") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("order_by {other:?}: by run_after or logical_date"))),
    };
    let filter = RunFilter { dag_id: any(&dag_id).map(String::from), states, oldest_first, ..RunFilter::default() };
    let page = state.service.list_runs(&filter, limit.clamp(1, 1000), None, offset.max(0), true).await?;
    let dag_runs = runs_answer(&state, &page.items).await?;
    Ok(Json(json!(DagRunCollection { dag_runs, total_entries: page.total.unwrap_or_default() })))
}

#[derive(Deserialize)]
pub(crate) struct TriggerBody {
    #[serde(default)]
    conf: Option<Map<String, Value>>,
    note: Option<String>,
    /// Sandflow: run this experiment's version.
    sandflow_experiment: Option<String>,
    /// Sandflow: run this version.
    sandflow_version: Option<String>,
}

/// `POST /api/v2/dags/{dag_id}/dagRuns` `{"conf", "note", "logical_date": null, ...}`: 200 with
/// the run, as Airflow answers (the client returns `None` on any other status).
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/dagRuns", tag = "airflow", params(("dag_id" = String, Path)),
    request_body = Object, responses((status = 200, description = "Airflow's DAGRunResponse", body = DagRun)))]
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<TriggerBody>,
) -> ApiResult<Json<Value>> {
    state.service.check_may_trigger(&by, &dag_id, body.sandflow_experiment.as_deref()).await?;
    let request = TriggerRequest {
        conf: body.conf.unwrap_or_default(),
        note: body.note,
        version: body.sandflow_version,
        experiment: body.sandflow_experiment,
        by,
    };
    let triggered = state.service.trigger(&dag_id, request).await?;
    Ok(Json(json!(DagRun::of(&triggered.run, &versions(&state, &dag_id).await?))))
}

/// The run `run_id` of `dag_id`: not found when it is another DAG's.
async fn run_of(state: &AppState, dag_id: &str, run_id: &str) -> ApiResult<RunRow> {
    let run = state.service.run_row(run_id).await?;
    if any(dag_id).is_some_and(|d| d != run.dag_id) {
        return Err(
            ServiceError::NotFound { what: "run", id: run_id.into(), hint: format!(" of DAG `{dag_id}`") }.into()
        );
    }
    Ok(run)
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}`.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}", tag = "airflow",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, description = "Airflow's DAGRunResponse", body = DagRun)))]
pub(crate) async fn dag_run(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let run = run_of(&state, &dag_id, &run_id).await?;
    Ok(Json(json!(DagRun::of(&run, &versions(&state, &run.dag_id).await?))))
}

/// A run's task instances as Airflow's, with their tasks' pools and retries from the run's version.
async fn instances(state: &AppState, run: &RunRow) -> ApiResult<Vec<TaskInstance>> {
    let detail = state.service.run(&run.run_id).await?;
    let tasks: HashMap<String, TaskView> = state
        .service
        .version_spec(&run.dag_id, &run.version)
        .await?
        .tasks
        .into_iter()
        .map(|t| (t.task_id.clone(), t))
        .collect();
    // Tries in start order: the last one of each instance wins.
    let last_tries: HashMap<(String, i64), TryRow> = state
        .service
        .store()
        .run_tries(&run.run_id)
        .await?
        .into_iter()
        .map(|t| ((t.task_id.clone(), t.map_index), t))
        .collect();
    let numbers = versions(state, &run.dag_id).await?;
    Ok(detail
        .tasks
        .iter()
        .map(|ti| {
            let last = last_tries.get(&(ti.task_id.clone(), ti.map_index));
            TaskInstance::of(run, ti, tasks.get(&ti.task_id), last, &numbers)
        })
        .collect())
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances`.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances", tag = "airflow",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path)),
    responses((status = 200, description = "Airflow's TaskInstanceCollectionResponse", body = TaskInstanceCollection)))]
pub(crate) async fn task_instances(
    State(state): State<AppState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::of(query);
    let run = run_of(&state, &dag_id, &run_id).await?;
    let wanted_states = params.all("state");
    let all = instances(&state, &run).await?;
    let picked: Vec<_> = all
        .into_iter()
        .filter(|ti| wanted_states.is_empty() || ti.state.is_some_and(|s| wanted_states.contains(&s)))
        .collect();
    let total = picked.len() as i64;
    let (limit, offset) = (params.number("limit", 100)?, params.number("offset", 0)?);
    let page = picked.into_iter().skip(offset.max(0) as usize).take(limit.clamp(0, 10_000) as usize).collect();
    Ok(Json(json!(TaskInstanceCollection { task_instances: page, total_entries: total })))
}

async fn one_instance(state: &AppState, run: &RunRow, task_id: &str, map_index: i64) -> ApiResult<TaskInstance> {
    instances(state, run).await?.into_iter().find(|ti| ti.task_id == task_id && ti.map_index == map_index).ok_or_else(
        || {
            ServiceError::NotFound {
                what: "task instance",
                id: task_id.into(),
                hint: format!(" in run `{}`", run.run_id),
            }
            .into()
        },
    )
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}`.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "airflow",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    responses((status = 200, description = "Airflow's TaskInstanceResponse", body = TaskInstance)))]
pub(crate) async fn task_instance(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let run = run_of(&state, &dag_id, &run_id).await?;
    Ok(Json(json!(one_instance(&state, &run, &task_id, -1).await?)))
}

#[derive(Deserialize)]
pub(crate) struct TaskInstancePatch {
    new_state: Option<String>,
}

/// `PATCH /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}` `{"new_state"}`:
/// success or failed, as Sandflow's mark; 200 with the instance in a collection.
#[utoipa::path(patch, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}", tag = "airflow",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path)),
    request_body = Object,
    responses((status = 200, description = "Airflow's TaskInstanceCollectionResponse", body = TaskInstanceCollection)))]
pub(crate) async fn patch_task_instance(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    Caller(by): Caller,
    JsonBody(body): JsonBody<TaskInstancePatch>,
) -> ApiResult<Json<Value>> {
    let params = Params::of(query);
    if let Some(field) = params.all("update_mask").into_iter().find(|f| *f != "new_state") {
        return Err(ApiError::BadRequest(format!("update_mask {field:?}: only new_state can be changed")));
    }
    let mark = match body.new_state.as_deref() {
        Some("success") => MarkState::Success,
        Some("failed") => MarkState::Failed,
        other => {
            return Err(ApiError::BadRequest(format!("new_state {other:?}: Sandflow sets success or failed")));
        }
    };
    let run = run_of(&state, &dag_id, &run_id).await?;
    one_instance(&state, &run, &task_id, -1).await?;
    state.service.check_may_change_run(&by, "run.mark", &run.run_id).await?;
    let action = Action::Mark {
        dag_id: run.dag_id.clone(),
        run_id: run.run_id.clone(),
        task_id: Some(task_id.clone()),
        map_index: None,
        state: mark,
    };
    state.service.perform(&action, &by).await?;
    let ti = one_instance(&state, &run, &task_id, -1).await?;
    Ok(Json(json!(TaskInstanceCollection { task_instances: vec![ti], total_entries: 1 })))
}

/// `GET .../taskInstances/{task_id}/logs/{try_number}?map_index=`: the try's log as lines.
#[utoipa::path(get, path = "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}",
    tag = "airflow",
    params(("dag_id" = String, Path), ("dag_run_id" = String, Path), ("task_id" = String, Path), ("try_number" = i64, Path)),
    responses((status = 200, description = "Airflow's TaskInstancesLogResponse", body = TaskLog)))]
pub(crate) async fn log(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let params = Params::of(query);
    let try_number: i64 = try_number.parse().map_err(|_| ServiceError::NotFound {
        what: "try",
        id: try_number.clone(),
        hint: String::new(),
    })?;
    let map_index = params.number("map_index", -1)?;
    let run = run_of(&state, &dag_id, &run_id).await?;
    let chunk = state.service.try_log(&run.run_id, &task_id, map_index, try_number, 0).await?;
    let content = chunk.text.lines().map(String::from).collect();
    Ok(Json(json!(TaskLog { content, continuation_token: None })))
}

/// A task id in a clear: a name, or `[name, map_index]`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum ClearTaskId {
    Task(String),
    Mapped(String, i64),
}

#[derive(Deserialize)]
pub(crate) struct ClearBody {
    #[serde(default = "yes")]
    dry_run: bool,
    dag_run_id: Option<String>,
    start_date: Option<chrono::DateTime<chrono::Utc>>,
    end_date: Option<chrono::DateTime<chrono::Utc>>,
    task_ids: Option<Vec<ClearTaskId>>,
    #[serde(default)]
    only_failed: bool,
    #[serde(default)]
    include_upstream: bool,
    #[serde(default)]
    include_downstream: bool,
}

fn yes() -> bool {
    true
}

/// The tasks a clear reaches: those named (all when none are), with their upstream or
/// downstream tasks when asked.
fn reached(tasks: &[TaskView], named: &[String], upstream: bool, downstream: bool) -> BTreeSet<String> {
    let mut reached: BTreeSet<String> = if named.is_empty() {
        tasks.iter().map(|t| t.task_id.clone()).collect()
    } else {
        named.iter().cloned().collect()
    };
    loop {
        let before = reached.len();
        for task in tasks {
            if downstream && task.upstream.iter().any(|u| reached.contains(u)) {
                reached.insert(task.task_id.clone());
            }
            if upstream && reached.contains(&task.task_id) {
                reached.extend(task.upstream.iter().cloned());
            }
        }
        if reached.len() == before {
            return reached;
        }
    }
}

/// `POST /api/v2/dags/{dag_id}/clearTaskInstances`: with `dry_run` (the client's default) the
/// instances a clear would reset; without, clears them (killing running tries) and answers them.
#[utoipa::path(post, path = "/api/v2/dags/{dag_id}/clearTaskInstances", tag = "airflow", params(("dag_id" = String, Path)),
    request_body = Object,
    responses((status = 200, description = "Airflow's TaskInstanceCollectionResponse", body = TaskInstanceCollection)))]
pub(crate) async fn clear(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<ClearBody>,
) -> ApiResult<Json<Value>> {
    state.service.dag(&dag_id).await?;
    let runs = match (&body.dag_run_id, body.start_date, body.end_date) {
        (Some(run_id), _, _) => vec![run_of(&state, &dag_id, run_id).await?],
        (None, Some(from), Some(to)) => state.service.store().runs_between(&dag_id, from, to).await?,
        _ => {
            return Err(ApiError::BadRequest(
                "name the runs: dag_run_id, or start_date and end_date (logical dates)".into(),
            ))
        }
    };
    let mut named = Vec::new();
    let mut map_index = None;
    for id in body.task_ids.unwrap_or_default() {
        match id {
            ClearTaskId::Task(task) => named.push(task),
            ClearTaskId::Mapped(task, index) => {
                named.push(task);
                map_index = Some(index);
            }
        }
    }
    let mut answer = Vec::new();
    for run in &runs {
        let tasks = state.service.version_spec(&run.dag_id, &run.version).await?.tasks;
        let reach = reached(&tasks, &named, body.include_upstream, body.include_downstream);
        let picked = |ti: &TaskInstance| {
            reach.contains(&ti.task_id)
                && map_index.is_none_or(|m| m == ti.map_index)
                && (!body.only_failed || matches!(ti.state, Some("failed" | "upstream_failed")))
        };
        if !body.dry_run {
            state.service.check_may_change_run(&by, "run.clear", &run.run_id).await?;
            let action = Action::Clear {
                dag_id: run.dag_id.clone(),
                run_ids: vec![run.run_id.clone()],
                task_ids: named.clone(),
                map_index,
                downstream: body.include_downstream,
                upstream: body.include_upstream,
                only_failed: body.only_failed,
            };
            let before: BTreeSet<(String, i64)> = instances(&state, run)
                .await?
                .iter()
                .filter(|ti| picked(ti))
                .map(|ti| (ti.task_id.clone(), ti.map_index))
                .collect();
            state.service.perform(&action, &by).await?;
            answer.extend(
                instances(&state, run)
                    .await?
                    .into_iter()
                    .filter(|ti| before.contains(&(ti.task_id.clone(), ti.map_index))),
            );
        } else {
            answer.extend(instances(&state, run).await?.into_iter().filter(|ti| picked(ti)));
        }
    }
    let total = answer.len() as i64;
    Ok(Json(json!(TaskInstanceCollection { task_instances: answer, total_entries: total })))
}
