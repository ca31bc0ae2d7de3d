//! DAGs, versions, experiments.

use axum::extract::{Path, State};
use axum::Json;
use sandflow_core::state::RunState;
use sandflow_service::dags::DagFilter;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryOf};
use crate::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
pub(crate) async fn list(State(state): State<AppState>, QueryOf(q): QueryOf<ListQuery>) -> ApiResult<Json<Value>> {
    let last_run_state = q
        .last_run_state
        .as_deref()
        .map(|s| s.parse::<RunState>().map_err(|e| ApiError::BadRequest(format!("last_run_state: {e}"))))
        .transpose()?;
    let filter = DagFilter { tag: q.tag, owner: q.owner, paused: q.paused, last_run_state, search: q.search };
    let mut dags = state.service.list_dags(&filter).await?;
    match q.order_by.as_deref().unwrap_or("dag_id") {
        "dag_id" => {}
        "-dag_id" => dags.reverse(),
        "updated_at" => dags.sort_by_key(|d| d.updated_at),
        "-updated_at" => dags.sort_by_key(|d| std::cmp::Reverse(d.updated_at)),
        other => {
            return Err(ApiError::BadRequest(format!(
                "order_by {other:?}: one of dag_id, -dag_id, updated_at, -updated_at"
            )))
        }
    }
    let total = dags.len();
    let offset = q.offset.unwrap_or(0).min(total);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items: Vec<_> = dags.into_iter().skip(offset).take(limit).collect();
    Ok(Json(json!({"items": items, "total": total, "offset": offset, "limit": limit})))
}

/// `GET /api/v1/dags/{dag_id}`.
pub(crate) async fn get(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.dag(&dag_id).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchBody {
    is_paused: bool,
}

/// `PATCH /api/v1/dags/{dag_id}` `{"is_paused": bool}`.
pub(crate) async fn patch(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    JsonBody(body): JsonBody<PatchBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.set_paused(&dag_id, body.is_paused).await?)))
}

/// `POST /api/v1/dags/{dag_id}/pause`.
pub(crate) async fn pause(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.set_paused(&dag_id, true).await?)))
}

/// `POST /api/v1/dags/{dag_id}/unpause`.
pub(crate) async fn unpause(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    let paused = state.service.set_paused(&dag_id, false).await?;
    state.service.store().notify(sandflow_store::Topic::Queued).await.ok();
    Ok(Json(json!(paused)))
}

/// `GET /api/v1/dags/{dag_id}/versions`: newest first, with their experiments.
pub(crate) async fn versions(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({"items": state.service.versions(&dag_id).await?})))
}

/// `GET /api/v1/dags/{dag_id}/versions/{version}`: the spec.
pub(crate) async fn version(
    State(state): State<AppState>,
    Path((dag_id, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.version_spec(&dag_id, &version).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffQuery {
    from: String,
    to: String,
}

/// `GET /api/v1/dags/{dag_id}/versions/diff?from=A&to=B`.
pub(crate) async fn diff(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    QueryOf(q): QueryOf<DiffQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.diff_versions(&dag_id, &q.from, &q.to).await?)))
}

/// `POST /api/v1/dags/{dag_id}/versions/{version}/activate`.
pub(crate) async fn activate(
    State(state): State<AppState>,
    Path((dag_id, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let changed = state.service.activate(&dag_id, &version).await?;
    Ok(Json(json!({"dag_id": dag_id, "active_version": version, "changed": changed})))
}

/// `GET /api/v1/dags/{dag_id}/experiments`: each experiment with its versions, newest first.
pub(crate) async fn experiments(State(state): State<AppState>, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    let versions = state.service.versions(&dag_id).await?;
    let mut by_name: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for v in &versions {
        for e in &v.experiments {
            by_name.entry(e.name.clone()).or_default().push(json!({
                "version": v.version, "author": e.author, "note": e.note, "created_at": e.created_at,
            }));
        }
    }
    let items: Vec<Value> =
        by_name.into_iter().map(|(name, versions)| json!({"name": name, "versions": versions})).collect();
    Ok(Json(json!({"items": items})))
}
