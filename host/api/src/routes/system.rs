//! Health, version, import errors, actions, pools, and the answer for unknown routes.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::Json;
use sandflow_store::{ActionRow, ImportErrorRow, PoolRow};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::openapi::{Items, PoolSet, ServerVersion};
use crate::AppState;

/// `GET /healthz`: 200 when the store answers, with the scheduler's heartbeat age; 503 when it
/// does not.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "`status`, `store` (`database`), `scheduler` (`heartbeat_age_s`), `uptime_s`", body = Object),
        (status = 503, description = "The store does not answer", body = Object)))]
pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.service.store().live_schedulers(std::time::Duration::from_secs(3600)).await {
        Ok(schedulers) => {
            let newest = schedulers.iter().map(|s| s.heartbeat_at).max();
            let age = newest.map(|at| (chrono::Utc::now() - at).num_milliseconds() as f64 / 1000.0);
            let healthy_scheduler =
                age.is_some_and(|a| a < sandflow_scheduler::actions::HEARTBEAT_VALID_FOR.as_secs_f64());
            (
                StatusCode::OK,
                Json(json!({
                    "status": "ok",
                    "store": {"status": "ok", "database": if state.service.store().is_postgres() { "postgres" } else { "sqlite" }},
                    "scheduler": {"status": if healthy_scheduler { "ok" } else { "no_heartbeat" }, "heartbeat_age_s": age},
                    "uptime_s": state.started.elapsed().as_secs_f64(),
                })),
            )
        }
        Err(e) => {
            tracing::warn!("health check: the store did not answer: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "store": {"status": "unreachable"}})),
            )
        }
    }
}

/// `GET /api/v1/health`: the same as `/healthz`.
#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, description = "As `/healthz`", body = Object), (status = 503, description = "The store does not answer", body = Object)))]
pub(crate) async fn health(state: State<AppState>) -> (StatusCode, Json<Value>) {
    healthz(state).await
}

/// `GET /api/v1/version`.
#[utoipa::path(get, path = "/api/v1/version", tag = "system", responses((status = 200, description = "The server's version", body = ServerVersion)))]
pub(crate) async fn version() -> Json<Value> {
    Json(json!(ServerVersion { version: env!("CARGO_PKG_VERSION").into(), api: "v1".into() }))
}

/// `GET /api/v1/import-errors`.
#[utoipa::path(get, path = "/api/v1/import-errors", tag = "system",
    responses((status = 200, description = "DAG files of the folder that do not load", body = Items<ImportErrorRow>)))]
pub(crate) async fn import_errors(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(Items { items: state.service.store().import_errors().await? })))
}

/// `GET /api/v1/actions/{id}`: a clear or mark, and how it went.
#[utoipa::path(get, path = "/api/v1/actions/{id}", tag = "system", params(("id" = i64, Path)),
    responses((status = 200, description = "The action", body = ActionRow)))]
pub(crate) async fn action(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let not_found = || sandflow_service::ServiceError::NotFound { what: "action", id: id.clone(), hint: String::new() };
    let number: i64 = id.parse().map_err(|_| ApiError::Service(not_found()))?;
    let row = state.service.store().action(number).await?.ok_or_else(|| ApiError::Service(not_found()))?;
    Ok(Json(serde_json::to_value(row).unwrap_or(Value::Null)))
}

/// `GET /api/v1/pools`.
#[utoipa::path(get, path = "/api/v1/pools", tag = "system", responses((status = 200, description = "Every pool", body = Items<PoolRow>)))]
pub(crate) async fn pools(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(Items { items: state.service.store().pools().await? })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PoolBody {
    slots: i64,
    #[serde(default)]
    description: Option<String>,
}

/// `PUT /api/v1/pools/{name}` `{"slots": n, "description": ...}`.
#[utoipa::path(put, path = "/api/v1/pools/{name}", tag = "system", params(("name" = String, Path)), request_body = PoolBody,
    responses((status = 200, description = "The pool as set", body = PoolSet)))]
pub(crate) async fn set_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<PoolBody>,
) -> ApiResult<Json<Value>> {
    if body.slots < 0 {
        return Err(ApiError::Service(sandflow_service::ServiceError::Invalid(format!(
            "a pool's slots must be 0 or more, not {}",
            body.slots
        ))));
    }
    if name.is_empty() || name.len() > 250 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Err(ApiError::Service(sandflow_service::ServiceError::Invalid(format!(
            "pool name {:?}: use 1 to 250 of letters, digits, \"_\", \".\" and \"-\"",
            sandflow_core::text::shorten(&name, 60)
        ))));
    }
    state.service.set_pool(&by, &name, body.slots, body.description.as_deref()).await?;
    state.service.store().notify(sandflow_store::Topic::Queued).await.ok();
    Ok(Json(json!(PoolSet { name, slots: body.slots, description: body.description })))
}

/// `DELETE /api/v1/pools/{name}`.
#[utoipa::path(delete, path = "/api/v1/pools/{name}", tag = "system", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete_pool(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Caller(by): Caller,
) -> ApiResult<StatusCode> {
    if state.service.delete_pool(&by, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::Service(sandflow_service::ServiceError::NotFound { what: "pool", id: name, hint: String::new() }))
    }
}

/// Any other path.
pub(crate) async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(sandflow_core::text::shorten(uri.path(), 200).into_owned())
}
