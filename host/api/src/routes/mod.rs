//! The routes, one module per area. Handlers read the request, call the service, answer JSON.

mod dags;
mod plugins;
mod runs;
mod system;

use axum::routing::{get, post, put};
use axum::Router;

use crate::AppState;

/// Every route (paths use axum 0.8's `{param}` syntax).
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/api/v1/health", get(system::healthz))
        .route("/api/v1/version", get(system::version))
        .route("/api/v1/import-errors", get(system::import_errors))
        .route("/api/v1/actions/{id}", get(system::action))
        .route("/api/v1/pools", get(system::pools))
        .route("/api/v1/pools/{name}", put(system::set_pool).delete(system::delete_pool))
        .route("/api/v1/events", get(runs::events))
        .route("/api/v1/dags", get(dags::list))
        .route("/api/v1/dags/{dag_id}", get(dags::get).patch(dags::patch))
        .route("/api/v1/dags/{dag_id}/pause", post(dags::pause))
        .route("/api/v1/dags/{dag_id}/unpause", post(dags::unpause))
        .route("/api/v1/dags/{dag_id}/versions", get(dags::versions))
        .route("/api/v1/dags/{dag_id}/versions/diff", get(dags::diff))
        .route("/api/v1/dags/{dag_id}/versions/{version}", get(dags::version))
        .route("/api/v1/dags/{dag_id}/versions/{version}/activate", post(dags::activate))
        .route("/api/v1/dags/{dag_id}/experiments", get(dags::experiments))
        .route("/api/v1/dags/{dag_id}/compare", get(runs::compare))
        .route("/api/v1/dags/{dag_id}/runs", get(runs::list_of_dag).post(runs::trigger))
        .route("/api/v1/dags/{dag_id}/clear", post(runs::clear_range))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{run_id}", get(runs::get))
        .route("/api/v1/runs/{run_id}/clear", post(runs::clear))
        .route("/api/v1/runs/{run_id}/mark", post(runs::mark))
        .route("/api/v1/runs/{run_id}/events", get(runs::run_events))
        .route("/api/v1/runs/{run_id}/tasks", get(runs::tasks))
        .route("/api/v1/runs/{run_id}/tasks/{task_id}/tries", get(runs::tries))
        .route("/api/v1/runs/{run_id}/tasks/{task_id}/tries/{try_number}/log", get(runs::log))
        .route("/api/v1/plugins", get(plugins::list).post(plugins::upload))
        .route("/api/v1/plugins/{id}", get(plugins::get))
        .route("/api/v1/plugins/{id}/bytes", get(plugins::bytes))
        .route("/api/v1/bundles", post(plugins::push_bundle))
        .fallback(system::no_route)
}

/// Who makes a request. Until users and tokens exist, the `X-Sandflow-User` header (the CLI
/// sends the local user name), else `anonymous`.
pub(crate) fn caller(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-sandflow-user")
        .and_then(|v| v.to_str().ok())
        .map(|v| sandflow_core::text::shorten(&sandflow_core::text::clean(v, false), 100).into_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "anonymous".to_string())
}
