//! Plugins by hash, and bundles.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandflow_service::bundles::{PushOptions, PushReport};
use sandflow_service::plugins::{PluginDetail, PluginSummary, UploadedPlugin};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::extract::{content_length, read_limited, require_type, QueryOf};
use crate::openapi::Items;
use crate::AppState;

/// `GET /api/v1/plugins`.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, description = "Every stored plugin, its languages and the DAG versions that pin it", body = Items<PluginSummary>)))]
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(Items { items: state.service.list_plugins().await? })))
}

/// `GET /api/v1/plugins/{id}`: metadata and the DAG versions that pin it.
#[utoipa::path(get, path = "/api/v1/plugins/{id}", tag = "plugins", params(("id" = String, Path, example = "sha256:…")),
    responses((status = 200, description = "The plugin and the versions that pin it", body = PluginDetail)))]
pub(crate) async fn get(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.plugin(&id).await?)))
}

/// `GET /api/v1/plugins/{id}/bytes`: the wasm, checked against its id.
#[utoipa::path(get, path = "/api/v1/plugins/{id}/bytes", tag = "plugins", params(("id" = String, Path)),
    responses((status = 200, description = "The module's bytes", content_type = "application/wasm", body = Vec<u8>)))]
pub(crate) async fn bytes(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Caller(who): Caller,
) -> ApiResult<Response> {
    state.service.check_may_download_plugins(&who)?;
    let bytes = state.service.plugin_bytes(&id).await?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}

/// `POST /api/v1/plugins`: one `.wasm` (`Content-Type: application/wasm`), checked and compiled.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins",
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "One WebAssembly module"),
    responses((status = 201, description = "Stored (new)", body = UploadedPlugin),
        (status = 200, description = "Already stored", body = UploadedPlugin)))]
pub(crate) async fn upload(State(state): State<AppState>, request: Request) -> ApiResult<Response> {
    require_type(request.headers(), &["application/wasm", "application/octet-stream"], "a wasm module")?;
    let declared = content_length(request.headers());
    let body = read_limited(request.into_body(), declared, sandflow_sandbox_limit()).await?;
    let uploaded = state.service.upload_plugin(body).await?;
    let status = if uploaded.new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!(uploaded))).into_response())
}

fn sandflow_sandbox_limit() -> usize {
    usize::try_from(sandflow_sandbox::MAX_PLUGIN_BYTES).unwrap_or(usize::MAX)
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PushQuery {
    /// Keep each DAG's active version.
    no_activate: Option<bool>,
    experiment: Option<String>,
    note: Option<String>,
    /// Check it and answer what a push would store (200), storing nothing.
    dry_run: Option<bool>,
}

/// `POST /api/v1/bundles?experiment=&note=&no_activate=&dry_run=`: a `.tar.gz` or `.zip` of DAG
/// files and plugins, checked whole and stored all or nothing. 201 with what was stored (200 with
/// what would be, for a dry run); 422 with every diagnostic.
#[utoipa::path(post, path = "/api/v1/bundles", tag = "plugins", params(PushQuery),
    request_body(content = Vec<u8>, content_type = "application/gzip", description = "A .tar.gz (or, as application/zip, a .zip) of DAG files and plugins"),
    responses((status = 201, description = "Every DAG with its version and every plugin with its id, new or known", body = PushReport),
        (status = 200, description = "A dry run: what a push would store; nothing was", body = PushReport),
        (status = 422, description = "Refused: nothing was stored; `diagnostics` lists every problem", body = crate::openapi::ErrorBody)))]
pub(crate) async fn push_bundle(
    State(state): State<AppState>,
    QueryOf(q): QueryOf<PushQuery>,
    Caller(by): Caller,
    headers: HeaderMap,
    request: Request,
) -> ApiResult<Response> {
    require_type(
        &headers,
        &[
            "application/gzip",
            "application/x-gzip",
            "application/x-tar+gzip",
            "application/zip",
            "application/octet-stream",
        ],
        "a bundle (.tar.gz or .zip)",
    )?;
    let limit = usize::try_from(state.service.bundle_limits().max_archive_bytes).unwrap_or(usize::MAX);
    let body = read_limited(request.into_body(), content_length(&headers), limit).await?;
    let options = PushOptions {
        // Activating a version is an admin's: anyone else's push keeps each DAG's active version
        // (a new DAG's first version is active all the same: there is nothing else to run).
        no_activate: q.no_activate.unwrap_or(false) || !by.is_at_least(sandflow_store::Role::Admin),
        experiment: q.experiment,
        note: q.note,
        by,
        dry_run: q.dry_run.unwrap_or(false),
    };
    let report = state.service.push_bundle(body, options).await?;
    let status = if report.dry_run { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json!(report))).into_response())
}
