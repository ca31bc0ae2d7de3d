//! Sandflow's HTTP API: `/api/v1` (everything the CLI can do), the event stream, `/healthz`,
//! `/metrics`, Airflow 3's `/api/v2` subset for its official client (`airflow`), and the web UI
//! at `/` (`ui`: web/dist, embedded).
//! Every route but the health checks and logging in needs a bearer token of the role the one
//! access table gives it (`auth`). Handlers are thin: they read the request, call the service
//! layer and write its answer as JSON; errors are `{"code", "message"}` with statuses chosen in
//! one place ([`error`]). The only crate that knows axum.

mod airflow;
mod auth;
pub mod error;
mod events;
mod extract;
mod metrics;
mod openapi;
mod routes;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use sandflow_service::Service;
use tokio_util::sync::CancellationToken;

pub use auth::{access, Access};
pub use events::{EventHub, StateEvent};
pub use ui::CONTENT_SECURITY_POLICY;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) service: Service,
    pub(crate) events: Arc<EventHub>,
    pub(crate) started: Instant,
}

impl AppState {
    /// The API over `service`.
    pub fn new(service: Service) -> AppState {
        let events = Arc::new(EventHub::new(service.store().clone()));
        // Installed before the scheduler and worker of this process count anything.
        metrics::handle();
        AppState { service, events, started: Instant::now() }
    }
}

/// Every route of the API.
pub fn router(state: AppState) -> Router {
    routes::router()
        .0
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(axum::middleware::from_fn(airflow::errors_as_airflow))
        .layer(axum::middleware::map_response(ui::security_headers))
        .with_state(state)
}

/// The OpenAPI document of every route (as `GET /api/v1/openapi.json` serves it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::router().1
}

/// Serves the API on `listener` until `shutdown` is cancelled; requests in flight finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let events = state.events.clone();
    let stop_events = shutdown.clone();
    tokio::spawn(async move { events.run(stop_events).await });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
