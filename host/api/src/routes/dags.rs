//! DAGs, versions, experiments.

use axum::extract::{Path, State};
use axum::Json;
use sandflow_core::state::RunState;
use sandflow_service::dags::{
    DagDetail, DagFilter, DagOrder, DagPage, DagSummary, Paused, VersionDiff, VersionSpec, VersionView,
};
use sandflow_service::overview::Grid;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryOf};
use crate::openapi::{Activated, Experiment, ExperimentVersion, Items, OffsetPage};
use crate::AppState;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    tag: Option<String>,
    owner: Option<String>,
    paused: Option<bool>,
    last_run_state: Option<String>,
    search: Option<String>,
    /// `dag_id` (default) or `-dag_id`, `updated_at`, `-updated_at`.
    order_by: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /api/v1/dags`: filtered, sorted, paginated by offset.
#[utoipa::path(get, path = "/api/v1/dags", tag = "dags", params(ListQuery),
    responses((status = 200, description = "DAGs, a page by offset", body = OffsetPage<DagSummary>)))]
pub(crate) async fn list(State(state): State<AppState>, QueryOf(q): QueryOf<ListQuery>) -> ApiResult<Json<Value>> {
    let last_run_state = q
        .last_run_state
        .as_deref()
        .map(|s| s.parse::<RunState>().map_err(|e| ApiError::BadRequest(format!("last_run_state: {e}"))))
        .transpose()?;
    let filter = DagFilter { tag: q.tag, owner: q.owner, paused: q.paused, last_run_state, search: q.search };
    let order: DagOrder = q.order_by.as_deref().unwrap_or("dag_id").parse().map_err(ApiError::BadRequest)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0);
    let DagPage { items, total } = state.service.list_dags_page(&filter, order, offset, limit).await?;
    Ok(Json(json!(OffsetPage { items, total, offset: offset.min(total), limit })))
}

/// `GET /api/v1/dags/{dag_id}`.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}", tag = "dags", params(("dag_id" = String, Path)),
    responses((status = 200, description = "The DAG, its tasks and versions", body = DagDetail)))]
pub(crate) async fn get(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.dag(&dag_id).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchBody {
    is_paused: bool,
}

/// `PATCH /api/v1/dags/{dag_id}` `{"is_paused": bool}`.
#[utoipa::path(patch, path = "/api/v1/dags/{dag_id}", tag = "dags", params(("dag_id" = String, Path)), request_body = PatchBody,
    responses((status = 200, description = "Paused or unpaused", body = Paused)))]
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<PatchBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.set_paused(&dag_id, body.is_paused, &by).await?)))
}

/// `POST /api/v1/dags/{dag_id}/pause`.
#[utoipa::path(post, path = "/api/v1/dags/{dag_id}/pause", tag = "dags", params(("dag_id" = String, Path)),
    responses((status = 200, description = "Paused", body = Paused)))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Caller(by): Caller,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.set_paused(&dag_id, true, &by).await?)))
}

/// `POST /api/v1/dags/{dag_id}/unpause`.
#[utoipa::path(post, path = "/api/v1/dags/{dag_id}/unpause", tag = "dags", params(("dag_id" = String, Path)),
    responses((status = 200, description = "Unpaused", body = Paused)))]
pub(crate) async fn unpause(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    Caller(by): Caller,
) -> ApiResult<Json<Value>> {
    let paused = state.service.set_paused(&dag_id, false, &by).await?;
    state.service.store().notify(sandflow_store::Topic::Queued).await.ok();
    Ok(Json(json!(paused)))
}

/// `GET /api/v1/dags/{dag_id}/versions`: newest first, with their experiments.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}/versions", tag = "dags", params(("dag_id" = String, Path)),
    responses((status = 200, description = "Versions, newest first", body = Items<VersionView>)))]
pub(crate) async fn versions(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(Items { items: state.service.versions(&dag_id).await? })))
}

/// `GET /api/v1/dags/{dag_id}/versions/{version}`: the spec.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}/versions/{version}", tag = "dags",
    params(("dag_id" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "The version's DAG file, plugins and tasks", body = VersionSpec)))]
pub(crate) async fn version(
    State(state): State<AppState>,
    Path((dag_id, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.version_spec(&dag_id, &version).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DiffQuery {
    from: String,
    to: String,
}

/// `GET /api/v1/dags/{dag_id}/versions/diff?from=A&to=B`.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}/versions/diff", tag = "dags", params(("dag_id" = String, Path), DiffQuery),
    responses((status = 200, description = "Tasks added, removed and changed; plugins and settings changed", body = VersionDiff)))]
pub(crate) async fn diff(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    QueryOf(q): QueryOf<DiffQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.diff_versions(&dag_id, &q.from, &q.to).await?)))
}

/// `POST /api/v1/dags/{dag_id}/versions/{version}/activate`.
#[utoipa::path(post, path = "/api/v1/dags/{dag_id}/versions/{version}/activate", tag = "dags",
    params(("dag_id" = String, Path), ("version" = String, Path)),
    responses((status = 200, description = "The version the schedule now uses", body = Activated)))]
pub(crate) async fn activate(
    State(state): State<AppState>,
    Path((dag_id, version)): Path<(String, String)>,
    Caller(by): Caller,
) -> ApiResult<Json<Value>> {
    let changed = state.service.activate(&dag_id, &version, &by).await?;
    Ok(Json(json!(Activated { dag_id, active_version: version, changed })))
}

/// `GET /api/v1/dags/{dag_id}/experiments`: each experiment with its versions, newest first.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}/experiments", tag = "dags", params(("dag_id" = String, Path)),
    responses((status = 200, description = "Experiments by name", body = Items<Experiment>)))]
pub(crate) async fn experiments(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    let versions = state.service.versions(&dag_id).await?;
    let mut by_name: std::collections::BTreeMap<String, Vec<ExperimentVersion>> = Default::default();
    for v in &versions {
        for e in &v.experiments {
            by_name.entry(e.name.clone()).or_default().push(ExperimentVersion {
                version: v.version.clone(),
                author: e.author.clone(),
                note: e.note.clone(),
                created_at: e.created_at,
            });
        }
    }
    let items = by_name.into_iter().map(|(name, versions)| Experiment { name, versions }).collect();
    Ok(Json(json!(Items { items })))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct GridQuery {
    /// How many of the latest runs (1 to 100, default 25).
    limit: Option<i64>,
}

/// `GET /api/v1/dags/{dag_id}/grid?limit=25`: the latest runs × the tasks, each cell a state and,
/// for a mapped task, its instances counted by state.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}/grid", tag = "dags", params(("dag_id" = String, Path), GridQuery),
    responses((status = 200, description = "Tasks in topological order, runs newest first, cells by run and task", body = Grid)))]
pub(crate) async fn grid(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    QueryOf(q): QueryOf<GridQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.grid(&dag_id, q.limit.unwrap_or(25)).await?)))
}
