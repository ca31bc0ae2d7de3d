//! Artifacts and try records: list a run's or an instance's artifacts, download one (streamed,
//! verified), read what a try was given.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use sandflow_store::ArtifactRow;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::QueryOf;
use crate::openapi::Items;
use crate::AppState;

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ArtifactQuery {
    /// The mapped instance (default: -1, the task itself).
    map_index: Option<i64>,
    /// Which try's artifact (default: the latest try that left it).
    #[serde(rename = "try")]
    try_number: Option<i64>,
}

/// `GET /api/v1/runs/{run_id}/artifacts`: every artifact the run's tries left.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/artifacts", tag = "runs", params(("run_id" = String, Path)),
    responses((status = 200, description = "By task, map index, try and name", body = Items<ArtifactRow>)))]
pub(crate) async fn of_run(State(state): State<AppState>, Path(run_id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(Items { items: state.service.artifacts(&run_id, None).await? })))
}

/// `GET /api/v1/runs/{run_id}/tasks/{task_id}/artifacts?map_index=N`: an instance's artifacts,
/// of every try.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/tasks/{task_id}/artifacts", tag = "runs",
    params(("run_id" = String, Path), ("task_id" = String, Path), ArtifactQuery),
    responses((status = 200, description = "By try and name", body = Items<ArtifactRow>)))]
pub(crate) async fn of_task(
    State(state): State<AppState>,
    Path((run_id, task_id)): Path<(String, String)>,
    QueryOf(q): QueryOf<ArtifactQuery>,
) -> ApiResult<Json<Value>> {
    let rows = state.service.artifacts(&run_id, Some((&task_id, q.map_index.unwrap_or(-1)))).await?;
    Ok(Json(json!(Items { items: rows })))
}

/// `GET /api/v1/runs/{run_id}/tasks/{task_id}/artifacts/{name}?map_index=N&try=N`: the bytes,
/// streamed; `ETag` and `X-Sandflow-Hash` are its `sha256:`. A blob found corrupt midway ends the
/// body early (the client sees a short read).
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/tasks/{task_id}/artifacts/{name}", tag = "runs",
    params(("run_id" = String, Path), ("task_id" = String, Path),
        ("name" = String, Path, description = "Its path under /out (may hold `/`)"), ArtifactQuery),
    responses((status = 200, description = "The artifact's bytes", content_type = "application/octet-stream",
        body = Vec<u8>)))]
pub(crate) async fn download(
    State(state): State<AppState>,
    Path((run_id, task_id, name)): Path<(String, String, String)>,
    QueryOf(q): QueryOf<ArtifactQuery>,
) -> ApiResult<Response> {
    let found = state.service.artifact(&run_id, &task_id, q.map_index.unwrap_or(-1), &name, q.try_number).await?;
    let hash = found.artifact.hash.clone();
    let base = name.rsplit('/').next().unwrap_or(&name).replace(['"', '\\', '\r', '\n'], "_");
    let body = Body::from_stream(found.stream.map(|chunk| chunk.map_err(std::io::Error::other)));
    let headers = [
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, found.size.to_string()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{base}\"")),
        (header::ETAG, format!("\"{hash}\"")),
        (header::HeaderName::from_static("x-sandflow-hash"), hash),
    ];
    Ok((headers, body).into_response())
}

/// `GET /api/v1/runs/{run_id}/tasks/{task_id}/tries/{try_number}/record?map_index=N`: what the try
/// was given (context bytes, plugin, limits, seed, clock start, inputs by hash, grants by name,
/// recorded HTTP), how it ended and its result's hash: what `sandflow tasks replay` runs.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/tasks/{task_id}/tries/{try_number}/record", tag = "runs",
    params(("run_id" = String, Path), ("task_id" = String, Path), ("try_number" = i64, Path), ArtifactQuery),
    responses((status = 200, description = "The try's record (secrets redacted)", body = Object)))]
pub(crate) async fn record(
    State(state): State<AppState>,
    Path((run_id, task_id, try_number)): Path<(String, String, String)>,
    QueryOf(q): QueryOf<ArtifactQuery>,
) -> ApiResult<Json<Value>> {
    let try_number: i64 =
        try_number.parse().map_err(|_| ApiError::BadRequest(format!("try {try_number:?}: not a number")))?;
    Ok(Json(state.service.try_record(&run_id, &task_id, q.map_index.unwrap_or(-1), try_number).await?))
}
