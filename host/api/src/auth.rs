//! Who may call which route: every request but a few public ones carries a bearer token; the
//! role each route needs is in one table, [`access`], which a test walks for every route of the
//! OpenAPI document and every role, so a new route cannot be forgotten (a route missing from the
//! table needs `admin`).
//!
//! No token or a bad one: 401 with `WWW-Authenticate: Bearer`. A valid token without the role:
//! 403, and an attempt to change something is recorded in the audit log as refused. What a
//! handler knows only from the data (an author's own experiments) the service checks.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sandflow_service::auth::Principal;
use sandflow_service::ServiceError;
use sandflow_store::Role;

use crate::error::ApiError;
use crate::AppState;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, with or without a token (health, version, logging in).
    Public,
    /// A valid token of this role or a higher one.
    AtLeast(Role),
}

/// The role each route needs: the one table of it. `None`: the route is not in the table (then
/// it needs `admin`, and the route × role test fails until it is added here).
pub fn access(method: &Method, path: &str) -> Option<Access> {
    use Access::{AtLeast, Public};
    use Role::{Admin, Author, Operator, Viewer};
    let m = method.as_str();
    let access = match (m, path) {
        ("GET", "/healthz" | "/api/v2/monitor/health" | "/api/v2/version") => Public,
        // The web UI's page and files (its data comes from the API, with the user's token).
        ("GET" | "HEAD", "/" | "/ui/{*file}") => Public,
        ("POST", "/auth/token" | "/api/v1/auth/login") => Public,
        // Who the caller is, their budget.
        ("GET", "/api/v1/me") => AtLeast(Viewer),
        ("POST", "/api/v1/auth/logout") => AtLeast(Viewer),
        // Users, tokens, budgets, the audit log.
        ("GET" | "POST", "/api/v1/users") => AtLeast(Admin),
        ("GET" | "PATCH", "/api/v1/users/{name}") => AtLeast(Admin),
        ("POST", "/api/v1/users/{name}/tokens") => AtLeast(Admin),
        ("GET", "/api/v1/users/{name}/budget") => AtLeast(Admin),
        ("GET", "/api/v1/tokens") => AtLeast(Admin),
        ("DELETE", "/api/v1/tokens/{id}") => AtLeast(Admin),
        ("GET", "/api/v1/budgets") => AtLeast(Admin),
        ("PUT" | "DELETE", "/api/v1/budgets/{kind}/{subject}") => AtLeast(Admin),
        ("GET", "/api/v1/audit") => AtLeast(Admin),
        // Pools and activating versions change what runs for everyone.
        ("PUT" | "DELETE", "/api/v1/pools/{name}") => AtLeast(Admin),
        ("POST", "/api/v1/dags/{dag_id}/versions/{version}/activate") => AtLeast(Admin),
        // Operating any DAG.
        ("PATCH", "/api/v1/dags/{dag_id}") => AtLeast(Operator),
        ("POST", "/api/v1/dags/{dag_id}/pause" | "/api/v1/dags/{dag_id}/unpause") => AtLeast(Operator),
        ("POST", "/api/v1/dags/{dag_id}/clear" | "/api/v1/dags/{dag_id}/backfill") => AtLeast(Operator),
        // Authors upload, and trigger, clear and mark their own experiments (checked by the
        // service against the experiment's author).
        ("POST", "/api/v1/bundles" | "/api/v1/plugins") => AtLeast(Author),
        ("POST", "/api/v1/dags/{dag_id}/runs") => AtLeast(Author),
        ("POST", "/api/v1/runs/{run_id}/clear" | "/api/v1/runs/{run_id}/mark") => AtLeast(Author),
        // Airflow's API, as /api/v1's: an operator pauses; an author triggers, clears and sets
        // the state of their own experiments' runs (checked by the service).
        ("PATCH", "/api/v2/dags/{dag_id}") => AtLeast(Operator),
        ("POST", "/api/v2/dags/{dag_id}/dagRuns" | "/api/v2/dags/{dag_id}/clearTaskInstances") => AtLeast(Author),
        ("PATCH", "/api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}") => AtLeast(Author),
        // Everything else is read-only: any user.
        ("GET", _) => AtLeast(Viewer),
        _ => return None,
    };
    Some(access)
}

/// The caller of a route that needs a token (taken by handlers that say who did something).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ServiceError::Unauthenticated("this route needs a token".into()).into())
    }
}

/// The address a request came from.
pub fn address_of(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The bearer token of a request, if it has one.
fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The middleware: authenticates the request and checks its route's role.
pub async fn require(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let template = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let need = access(request.method(), &template).unwrap_or(Access::AtLeast(Role::Admin));
    let address = address_of(&request);
    let principal = match bearer(&request) {
        Some(token) => match state.service.authenticate(token, &address).await {
            Ok(principal) => Some(principal),
            Err(e) if need == Access::Public => {
                tracing::debug!("a public route with a token that was refused: {e}");
                None
            }
            Err(e) => return unauthorized(e),
        },
        None => None,
    };
    if let Access::AtLeast(role) = need {
        let Some(principal) = &principal else {
            return unauthorized(ServiceError::Unauthenticated(
                "this route needs a token: Authorization: Bearer TOKEN (sandflow users token NAME, or POST /auth/token)"
                    .into(),
            ));
        };
        if principal.role < role {
            let why = format!("{} {template} needs the {role} role", request.method());
            let error = if request.method() != Method::GET {
                let target = request.uri().path().to_string();
                state.service.refuse(principal, &format!("{} {template}", request.method()), &target, &why).await
            } else {
                ServiceError::Forbidden(format!("{why} (you are {} with the {} role)", principal.name, principal.role))
            };
            return ApiError::from(error).into_response();
        }
    }
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

fn unauthorized(e: ServiceError) -> Response {
    let mut response = ApiError::from(e).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
