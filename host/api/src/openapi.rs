//! The OpenAPI document (`GET /api/v1/openapi.json`). Each route is registered with
//! `utoipa_axum::routes!` from its handler's `#[utoipa::path]`, so the document lists exactly the
//! routes the server answers; this module adds what is shared by all of them (the error body, the
//! tags) and the answer shapes that are the API's own rather than the service's.

use std::sync::OnceLock;

use serde::Serialize;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};
use utoipa::ToSchema;

/// Every error: a stable `code` (mapped to its status in one place), a message for people, and
/// for a refused bundle every diagnostic found.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    #[schema(example = "not_found")]
    code: String,
    message: String,
    #[schema(nullable = false)]
    diagnostics: Option<Vec<sandflow_bundle::Diagnostic>>,
}

/// A list that is not paginated (it is small: a run's task instances, a DAG's versions).
#[derive(Serialize, ToSchema)]
pub(crate) struct Items<T: ToSchema> {
    pub(crate) items: Vec<T>,
}

/// A page by offset.
#[derive(Serialize, ToSchema)]
pub(crate) struct OffsetPage<T: ToSchema> {
    pub(crate) items: Vec<T>,
    pub(crate) total: usize,
    pub(crate) offset: usize,
    pub(crate) limit: usize,
}

/// The answer of `.../activate`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Activated {
    pub(crate) dag_id: String,
    pub(crate) active_version: String,
    /// False when it already was the active version.
    pub(crate) changed: bool,
}

/// One experiment of a DAG and its versions, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct Experiment {
    pub(crate) name: String,
    pub(crate) versions: Vec<ExperimentVersion>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExperimentVersion {
    pub(crate) version: String,
    pub(crate) author: String,
    pub(crate) note: Option<String>,
    pub(crate) created_at: chrono::DateTime<chrono::Utc>,
}

/// A pool as set.
#[derive(Serialize, ToSchema)]
pub(crate) struct PoolSet {
    pub(crate) name: String,
    pub(crate) slots: i64,
    pub(crate) description: Option<String>,
}

/// The server's version.
#[derive(Serialize, ToSchema)]
pub(crate) struct ServerVersion {
    pub(crate) version: String,
    pub(crate) api: String,
}

/// The document, once built; `/api/v1/openapi.json` serves it.
static DOCUMENT: OnceLock<String> = OnceLock::new();

/// Completes the document the routes collected: title, tags, and the error answer of every
/// operation (its `default` response), then keeps it for the route that serves it.
pub(crate) fn finish(mut api: OpenApi) -> OpenApi {
    api.info.title = "Sandflow API".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description = Some(
        "Sandflow's HTTP API: DAGs, versions and experiments, runs, task instances, tries and logs, \
         plugins by hash, bundles, pools, actions, events. Errors are `{\"code\", \"message\"}` with a \
         stable code."
            .into(),
    );
    let components = api.components.get_or_insert_with(Default::default);
    let mut schemas = Vec::new();
    <ErrorBody as ToSchema>::schemas(&mut schemas);
    components.schemas.insert("ErrorBody".into(), <ErrorBody as utoipa::PartialSchema>::schema());
    for (name, schema) in schemas {
        components.schemas.insert(name, schema);
    }
    let error = ResponseBuilder::new()
        .description("An error: `code` says which (bad_request, not_found, conflict, payload_too_large, ...)")
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
        .build();
    for item in api.paths.paths.values_mut() {
        for op in
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            op.responses.responses.entry("default".into()).or_insert_with(|| RefOr::T(error.clone()));
        }
    }
    let _ = DOCUMENT.set(api.to_json().unwrap_or_else(|_| "{}".into()));
    api
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json")))]
pub(crate) async fn document() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], DOCUMENT.get().cloned().unwrap_or_else(|| "{}".into()))
}
