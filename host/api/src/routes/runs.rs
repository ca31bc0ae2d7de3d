//! Runs: list, trigger, read, clear, mark, compare; task instances, tries, logs; events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::Stream;
use sandflow_core::state::RunState;
use sandflow_scheduler::actions::{Action, MarkState};
use sandflow_service::actions::ActionDone;
use sandflow_service::backfill::{BackfillReport, BackfillRequest};
use sandflow_service::overview::Timeline;
use sandflow_service::runs::{Comparison, LogChunk, Page, RunDetail, RunFilter, TriggerRequest, Triggered};
use sandflow_store::{RunRow, RunType, TaskInstanceRow, TryRow};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryOf};
use crate::openapi::Items;
use crate::{AppState, StateEvent};

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    dag_id: Option<String>,
    /// One state, or several separated by commas.
    state: Option<String>,
    run_type: Option<String>,
    experiment: Option<String>,
    triggered_by: Option<String>,
    /// `-created_at` (default, newest first) or `created_at`.
    order_by: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    cursor: Option<String>,
    /// Also count every matching run (one more query).
    total: Option<bool>,
}

fn filter_of(q: &ListQuery, dag_id: Option<String>) -> ApiResult<RunFilter> {
    let states = match &q.state {
        None => Vec::new(),
        Some(text) => text
            .split(',')
            .map(|s| s.trim().parse::<RunState>().map_err(|e| ApiError::BadRequest(format!("state: {e}"))))
            .collect::<Result<_, _>>()?,
    };
    let run_type = q
        .run_type
        .as_deref()
        .map(|t| t.parse::<RunType>().map_err(|e| ApiError::BadRequest(format!("run_type: {e}"))))
        .transpose()?;
    let oldest_first = match q.order_by.as_deref().unwrap_or("-created_at") {
        "-created_at" => false,
        "created_at" => true,
        other => return Err(ApiError::BadRequest(format!("order_by {other:?}: one of -created_at, created_at"))),
    };
    Ok(RunFilter {
        dag_id: dag_id.or_else(|| q.dag_id.clone()),
        states,
        run_type,
        experiment: q.experiment.clone(),
        triggered_by: q.triggered_by.clone(),
        oldest_first,
    })
}

async fn list_runs(state: &AppState, q: ListQuery, dag_id: Option<String>) -> ApiResult<Json<Value>> {
    let filter = filter_of(&q, dag_id)?;
    let page = state
        .service
        .list_runs(
            &filter,
            q.limit.unwrap_or(100),
            q.cursor.as_deref(),
            q.offset.unwrap_or(0),
            q.total.unwrap_or(false),
        )
        .await?;
    Ok(Json(json!(page)))
}

/// `GET /api/v1/runs`: every DAG's runs, filtered, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(ListQuery),
    responses((status = 200, description = "A page of runs; `next_cursor` reads the next", body = Page<RunRow>)))]
pub(crate) async fn list(State(state): State<AppState>, QueryOf(q): QueryOf<ListQuery>) -> ApiResult<Json<Value>> {
    list_runs(&state, q, None).await
}

/// `GET /api/v1/dags/{dag_id}/runs`.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}/runs", tag = "runs", params(("dag_id" = String, Path), ListQuery),
    responses((status = 200, description = "A page of the DAG's runs", body = Page<RunRow>)))]
pub(crate) async fn list_of_dag(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    QueryOf(q): QueryOf<ListQuery>,
) -> ApiResult<Json<Value>> {
    if state.service.store().dag(&dag_id).await?.is_none() {
        return Err(sandflow_service::ServiceError::NotFound { what: "DAG", id: dag_id, hint: String::new() }.into());
    }
    list_runs(&state, q, Some(dag_id)).await
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriggerBody {
    #[serde(default)]
    #[schema(value_type = Object)]
    conf: Map<String, Value>,
    note: Option<String>,
    dag_version: Option<String>,
    experiment: Option<String>,
}

/// `POST /api/v1/dags/{dag_id}/runs` `{"conf", "note", "dag_version", "experiment"}`: 201 with
/// the run (and `dag_paused` when it waits for its DAG to be unpaused).
#[utoipa::path(post, path = "/api/v1/dags/{dag_id}/runs", tag = "runs", params(("dag_id" = String, Path)),
    request_body = TriggerBody,
    responses((status = 201, description = "The run, queued", body = Triggered)))]
pub(crate) async fn trigger(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<TriggerBody>,
) -> ApiResult<Response> {
    state.service.check_may_trigger(&by, &dag_id, body.experiment.as_deref()).await?;
    let request =
        TriggerRequest { conf: body.conf, note: body.note, version: body.dag_version, experiment: body.experiment, by };
    let triggered = state.service.trigger(&dag_id, request).await?;
    Ok((axum::http::StatusCode::CREATED, Json(json!(triggered))).into_response())
}

/// `GET /api/v1/runs/{run_id}`: the run with its task instances.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "runs", params(("run_id" = String, Path)),
    responses((status = 200, description = "The run, its task instances and plugin ids", body = RunDetail)))]
pub(crate) async fn get(State(state): State<AppState>, Path(run_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.run(&run_id).await?)))
}

/// `GET /api/v1/runs/{run_id}/timeline`: every try's queued and running time (a mapped task's
/// instances merged by try number) and the critical path, for the Gantt chart.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/timeline", tag = "runs", params(("run_id" = String, Path)),
    responses((status = 200, description = "Tasks with their tries' times, the critical path", body = Timeline)))]
pub(crate) async fn timeline(State(state): State<AppState>, Path(run_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.timeline(&run_id).await?)))
}

/// `GET /api/v1/runs/{run_id}/tasks`.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/tasks", tag = "runs", params(("run_id" = String, Path)),
    responses((status = 200, description = "The run's task instances", body = Items<TaskInstanceRow>)))]
pub(crate) async fn tasks(State(state): State<AppState>, Path(run_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(Items { items: state.service.run(&run_id).await?.tasks })))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct InstanceQuery {
    /// The mapped instance (default: -1, the task itself).
    map_index: Option<i64>,
    offset: Option<usize>,
    /// Keep the answer open and send the log as it grows, until the try ends.
    follow: Option<bool>,
}

/// `GET /api/v1/runs/{run_id}/tasks/{task_id}/tries`: outcome, message, plugin id, fuel used,
/// peak memory, wall time, timestamps.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/tasks/{task_id}/tries", tag = "runs",
    params(("run_id" = String, Path), ("task_id" = String, Path), InstanceQuery),
    responses((status = 200, description = "The instance's tries, oldest first", body = Items<TryRow>)))]
pub(crate) async fn tries(
    State(state): State<AppState>,
    Path((run_id, task_id)): Path<(String, String)>,
    QueryOf(q): QueryOf<InstanceQuery>,
) -> ApiResult<Json<Value>> {
    let tries = state.service.tries(&run_id, &task_id, q.map_index.unwrap_or(-1)).await?;
    Ok(Json(json!(Items { items: tries })))
}

/// `GET /api/v1/runs/{run_id}/tasks/{task_id}/tries/{n}/log?offset=B&follow=true`: JSON
/// (`text`, `offset`, `next_offset`, `complete`), or with `follow` the text itself, streamed
/// until the try ends.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/tasks/{task_id}/tries/{try_number}/log", tag = "runs",
    params(("run_id" = String, Path), ("task_id" = String, Path), ("try_number" = i64, Path), InstanceQuery),
    responses((status = 200, description = "The log from `offset` (JSON), or with `follow` the text as it grows",
        content((LogChunk = "application/json"), (String = "text/plain")))))]
pub(crate) async fn log(
    State(state): State<AppState>,
    Path((run_id, task_id, try_number)): Path<(String, String, String)>,
    QueryOf(q): QueryOf<InstanceQuery>,
) -> ApiResult<Response> {
    let try_number: i64 = try_number.parse().map_err(|_| {
        ApiError::from(sandflow_service::ServiceError::NotFound {
            what: "try",
            id: try_number.clone(),
            hint: String::new(),
        })
    })?;
    let map_index = q.map_index.unwrap_or(-1);
    let chunk = state.service.try_log(&run_id, &task_id, map_index, try_number, q.offset.unwrap_or(0)).await?;
    if !q.follow.unwrap_or(false) {
        return Ok(Json(json!(chunk)).into_response());
    }
    let stream = futures_util::stream::unfold(Some(chunk), move |chunk| {
        let (state, run_id, task_id) = (state.clone(), run_id.clone(), task_id.clone());
        async move {
            let chunk = chunk?;
            let text = chunk.text.clone();
            let next = if chunk.complete {
                None
            } else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                state.service.try_log(&run_id, &task_id, map_index, try_number, chunk.next_offset).await.ok()
            };
            Some((Ok::<_, Infallible>(text), next))
        }
    });
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], axum::body::Body::from_stream(stream))
        .into_response())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClearBody {
    #[serde(default)]
    task_ids: Vec<String>,
    map_index: Option<i64>,
    #[serde(default)]
    downstream: bool,
    #[serde(default)]
    upstream: bool,
    #[serde(default)]
    only_failed: bool,
}

/// `POST /api/v1/runs/{run_id}/clear`: kill and rerun tasks (all, or `task_ids`).
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/clear", tag = "runs", params(("run_id" = String, Path)),
    request_body = ClearBody,
    responses((status = 200, description = "Done (or carried out by the scheduler)", body = ActionDone)))]
pub(crate) async fn clear(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<ClearBody>,
) -> ApiResult<Json<Value>> {
    let run = state.service.run_row(&run_id).await?;
    state.service.check_may_change_run(&by, "run.clear", &run_id).await?;
    let action = Action::Clear {
        dag_id: run.dag_id,
        run_ids: vec![run_id],
        task_ids: body.task_ids,
        map_index: body.map_index,
        downstream: body.downstream,
        upstream: body.upstream,
        only_failed: body.only_failed,
    };
    Ok(Json(json!(state.service.perform(&action, &by).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClearRangeBody {
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    only_failed: bool,
}

/// `POST /api/v1/dags/{dag_id}/clear` `{"from", "to", "only_failed"}`: every run whose logical
/// date is in the range.
#[utoipa::path(post, path = "/api/v1/dags/{dag_id}/clear", tag = "runs", params(("dag_id" = String, Path)),
    request_body = ClearRangeBody,
    responses((status = 200, description = "Done", body = ActionDone)))]
pub(crate) async fn clear_range(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<ClearRangeBody>,
) -> ApiResult<Json<Value>> {
    let done = state.service.clear_range(&dag_id, body.from, body.to, body.only_failed, &by).await?;
    Ok(Json(json!(done)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackfillBody {
    /// The first interval start.
    from: chrono::DateTime<chrono::Utc>,
    /// The last interval start.
    to: chrono::DateTime<chrono::Utc>,
    /// Clear and rerun the failed tasks of intervals whose run failed.
    #[serde(default)]
    rerun_failed: bool,
}

/// `POST /api/v1/dags/{dag_id}/backfill` `{"from", "to", "rerun_failed"}`: a run for each interval
/// of the schedule that starts in the range and has none; 201 with what was done and the runs to
/// watch.
#[utoipa::path(post, path = "/api/v1/dags/{dag_id}/backfill", tag = "runs", params(("dag_id" = String, Path)),
    request_body = BackfillBody,
    responses((status = 201, description = "Runs created (and failed ones cleared)", body = BackfillReport)))]
pub(crate) async fn backfill(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<BackfillBody>,
) -> ApiResult<Response> {
    let request = BackfillRequest { from: body.from, to: body.to, rerun_failed: body.rerun_failed, by };
    let report = state.service.backfill(&dag_id, &request).await?;
    Ok((axum::http::StatusCode::CREATED, Json(json!(report))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MarkBody {
    /// `success` or `failed`.
    #[schema(value_type = String, example = "success")]
    state: MarkState,
    task_id: Option<String>,
    map_index: Option<i64>,
}

/// `POST /api/v1/runs/{run_id}/mark` `{"state": "success"|"failed", "task_id"?}`.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/mark", tag = "runs", params(("run_id" = String, Path)),
    request_body = MarkBody,
    responses((status = 200, description = "Done", body = ActionDone)))]
pub(crate) async fn mark(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<MarkBody>,
) -> ApiResult<Json<Value>> {
    let run = state.service.run_row(&run_id).await?;
    state.service.check_may_change_run(&by, "run.mark", &run_id).await?;
    let action = Action::Mark {
        dag_id: run.dag_id,
        run_id,
        task_id: body.task_id,
        map_index: body.map_index,
        state: body.state,
    };
    Ok(Json(json!(state.service.perform(&action, &by).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CompareQuery {
    /// Run ids separated by commas.
    runs: String,
}

/// `GET /api/v1/dags/{dag_id}/compare?runs=a,b`.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}/compare", tag = "runs", params(("dag_id" = String, Path), CompareQuery),
    responses((status = 200, description = "Per task: each run's state, duration, fuel, memory, metrics; whether outputs differ", body = Comparison)))]
pub(crate) async fn compare(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    QueryOf(q): QueryOf<CompareQuery>,
) -> ApiResult<Json<Value>> {
    let runs: Vec<String> = q.runs.split(',').map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect();
    Ok(Json(json!(state.service.compare(&dag_id, &runs).await?)))
}

/// How long a run's event stream waits without news before it reads the run itself.
const RUN_RECHECK: Duration = Duration::from_secs(1);

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    dag_id: Option<String>,
}

fn sse_event(event: &StateEvent) -> Event {
    let name = match event {
        StateEvent::Run { .. } => "run",
        StateEvent::Task { .. } => "task",
    };
    Event::default().event(name).data(serde_json::to_string(event).unwrap_or_default())
}

/// `GET /api/v1/events?dag_id=`: server-sent events of run and task state changes.
#[utoipa::path(get, path = "/api/v1/events", tag = "runs", params(EventsQuery),
    responses((status = 200, description = "Server-sent events `run` and `task` (and `lagged` when some were skipped)",
        content((StateEvent = "text/event-stream")))))]
pub(crate) async fn events(
    State(state): State<AppState>,
    QueryOf(q): QueryOf<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.events.subscribe();
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let dag_id = q.dag_id.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(event) if dag_id.as_deref().is_none_or(|d| d == event.dag_id()) => {
                        return Some((Ok(sse_event(&event)), rx))
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        return Some((Ok(Event::default().event("lagged").data(format!("{{\"skipped\":{n}}}"))), rx))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `GET /api/v1/runs/{run_id}/events`: the run as it stands (its state and every task's), then
/// every change, ending after the run ends.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/events", tag = "runs", params(("run_id" = String, Path)),
    responses((status = 200, description = "Server-sent events of the run, ending with its end",
        content((StateEvent = "text/event-stream")))))]
pub(crate) async fn run_events(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    // Subscribed before the snapshot is read: nothing falls between the two.
    let rx = state.events.subscribe();
    let detail = state.service.run(&run_id).await?;
    let mut first: Vec<StateEvent> = detail
        .tasks
        .iter()
        .map(|ti| StateEvent::Task {
            dag_id: detail.run.dag_id.clone(),
            run_id: run_id.clone(),
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
            state: ti.state,
            try_number: ti.try_number,
        })
        .collect();
    first.push(StateEvent::Run { dag_id: detail.run.dag_id.clone(), run_id: run_id.clone(), state: detail.run.state });
    let ended = detail.run.state.is_finished();
    let snapshot = futures_util::stream::iter(first.into_iter().map(|e| Ok(sse_event(&e))));
    let live = futures_util::stream::unfold((rx, ended), move |(mut rx, ended)| {
        let (run_id, state) = (run_id.clone(), state.clone());
        async move {
            if ended {
                return None;
            }
            loop {
                match tokio::time::timeout(RUN_RECHECK, rx.recv()).await {
                    Ok(Ok(event)) if event.run_id() == run_id => {
                        let ends = matches!(&event, StateEvent::Run { state, .. } if state.is_finished());
                        return Some((Ok(sse_event(&event)), (rx, ends)));
                    }
                    Ok(Ok(_)) => {}
                    // Changes were missed: the client reads the run again (GET /api/v1/runs/{id}).
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                        let event = Event::default().event("lagged").data(format!("{{\"skipped\":{n}}}"));
                        return Some((Ok(event), (rx, false)));
                    }
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
                    // Quiet for a while: the run may have ended between two polls of the hub
                    // (which then never saw it end), so read it.
                    Err(_) => {
                        if let Ok(run) = state.service.run_row(&run_id).await {
                            if run.state.is_finished() {
                                let event =
                                    StateEvent::Run { dag_id: run.dag_id, run_id: run.run_id, state: run.state };
                                return Some((Ok(sse_event(&event)), (rx, true)));
                            }
                        }
                    }
                }
            }
        }
    });
    use futures_util::StreamExt;
    Ok(Sse::new(snapshot.chain(live)).keep_alive(KeepAlive::default()))
}
