//! The routes, one module per area. Handlers read the request, call the service, answer JSON.

mod artifacts;
mod dags;
mod plugins;
mod runs;
mod system;
mod users;

use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{airflow, openapi, ui, AppState};

/// Every route, each registered with its OpenAPI operation by `routes!` (one call per path; its
/// handlers' `#[utoipa::path]` give the path and method), and the document they make.
pub(crate) fn router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::new()
        .routes(routes!(system::healthz))
        .routes(routes!(system::health))
        .routes(routes!(system::version))
        .routes(routes!(openapi::document))
        .routes(routes!(crate::metrics::metrics))
        .routes(routes!(system::import_errors))
        .routes(routes!(system::action))
        .routes(routes!(system::pools))
        .routes(routes!(system::set_pool, system::delete_pool))
        .routes(routes!(runs::events))
        .routes(routes!(dags::list))
        .routes(routes!(dags::get, dags::patch))
        .routes(routes!(dags::pause))
        .routes(routes!(dags::unpause))
        .routes(routes!(dags::versions))
        .routes(routes!(dags::diff))
        .routes(routes!(dags::version))
        .routes(routes!(dags::activate))
        .routes(routes!(dags::experiments))
        .routes(routes!(dags::grid))
        .routes(routes!(runs::compare))
        .routes(routes!(runs::list_of_dag, runs::trigger))
        .routes(routes!(runs::clear_range))
        .routes(routes!(runs::backfill))
        .routes(routes!(runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(runs::clear))
        .routes(routes!(runs::mark))
        .routes(routes!(runs::run_events))
        .routes(routes!(runs::timeline))
        .routes(routes!(runs::tasks))
        .routes(routes!(runs::tries))
        .routes(routes!(runs::log))
        .routes(routes!(artifacts::of_run))
        .routes(routes!(artifacts::of_task))
        .routes(routes!(artifacts::download))
        .routes(routes!(artifacts::record))
        .routes(routes!(plugins::list, plugins::upload))
        .routes(routes!(plugins::get))
        .routes(routes!(plugins::bytes))
        .routes(routes!(plugins::push_bundle))
        .routes(routes!(users::token))
        .routes(routes!(users::login))
        .routes(routes!(users::logout))
        .routes(routes!(users::me))
        .routes(routes!(users::list, users::add))
        .routes(routes!(users::get, users::change))
        .routes(routes!(users::issue))
        .routes(routes!(users::budget))
        .routes(routes!(users::tokens))
        .routes(routes!(users::revoke))
        .routes(routes!(users::budgets))
        .routes(routes!(users::set_budget, users::remove_budget))
        .routes(routes!(users::audit))
        .routes(routes!(airflow::version))
        .routes(routes!(airflow::health))
        .routes(routes!(airflow::dags))
        .routes(routes!(airflow::get_dag, airflow::patch_dag))
        .routes(routes!(airflow::dag_runs, airflow::trigger))
        .routes(routes!(airflow::dag_run))
        .routes(routes!(airflow::task_instances))
        .routes(routes!(airflow::task_instance, airflow::patch_task_instance))
        .routes(routes!(airflow::log))
        .routes(routes!(airflow::clear))
        .split_for_parts();
    // The web UI, not in the OpenAPI document: its page at `/`, its files under `/ui/`.
    let router = router.route("/", get(ui::index)).route("/ui/{*file}", get(ui::asset));
    (router.fallback(fallback), openapi::finish(api))
}

/// A request no route takes: the UI's page for a path a browser may show (the app routes it),
/// a JSON 404 for the rest (`/api/...` among them).
async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if ui::is_page(&method, uri.path()) {
        ui::index(headers).await
    } else {
        system::no_route(uri).await.into_response()
    }
}
