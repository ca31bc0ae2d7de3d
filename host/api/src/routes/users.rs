//! Logging in, who am I, users, tokens, fuel budgets, and the audit log.

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sandflow_service::auth::{BudgetSubject, BudgetView, IssuedToken, Principal, UserEdit};
use sandflow_store::{AuditQuery, AuditRow, BudgetRow, Role, TokenRow, UserRow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::{address_of, Caller};
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, QueryOf};
use crate::openapi::Items;
use crate::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
}

/// What a login answers: Airflow's `access_token`, and Sandflow's token id and expiry.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct LoginAnswer {
    access_token: String,
    token_type: &'static str,
    token_id: String,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn log_in(state: &AppState, request: Request) -> ApiResult<Response> {
    let address = address_of(&request);
    let JsonBody(body) = JsonBody::<LoginBody>::from_request(request, &()).await?;
    let token = state.service.login(&body.username, &body.password, &address).await?;
    let answer = LoginAnswer {
        access_token: token.token,
        token_type: "bearer",
        token_id: token.id,
        expires_at: token.expires_at,
    };
    Ok((StatusCode::CREATED, Json(json!(answer))).into_response())
}

/// `POST /auth/token` `{"username", "password"}`: 201 with a token valid for a day (as
/// Airflow 3 answers its official client).
#[utoipa::path(post, path = "/auth/token", tag = "users", request_body = LoginBody,
    responses((status = 201, description = "A new token", body = LoginAnswer)))]
pub(crate) async fn token(State(state): State<AppState>, request: Request) -> ApiResult<Response> {
    log_in(&state, request).await
}

/// `POST /api/v1/auth/login`: the same as `/auth/token`.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "users", request_body = LoginBody,
    responses((status = 201, description = "A new token", body = LoginAnswer)))]
pub(crate) async fn login(State(state): State<AppState>, request: Request) -> ApiResult<Response> {
    log_in(&state, request).await
}

/// Who the caller is, and their fuel today.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    #[serde(flatten)]
    principal: Principal,
    budget: Option<BudgetView>,
}

/// `GET /api/v1/me`.
#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses((status = 200, description = "The caller, their role and their fuel budget", body = Me)))]
pub(crate) async fn me(State(state): State<AppState>, Caller(principal): Caller) -> ApiResult<Json<Value>> {
    let budget = state.service.budget_of(&principal.name).await.ok();
    Ok(Json(json!(Me { principal, budget })))
}

/// `GET /api/v1/users`.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, description = "Every user", body = Items<UserRow>)))]
pub(crate) async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(Items { items: state.service.users().await? })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewUserBody {
    name: String,
    #[schema(value_type = String, example = "author")]
    role: Role,
    /// Without one the user logs in with tokens only.
    password: Option<String>,
}

/// `POST /api/v1/users` `{"name", "role", "password"?}`: 201 with the user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUserBody,
    responses((status = 201, description = "The user", body = UserRow)))]
pub(crate) async fn add(
    State(state): State<AppState>,
    Caller(by): Caller,
    JsonBody(body): JsonBody<NewUserBody>,
) -> ApiResult<Response> {
    let user = state.service.add_user(&by, &body.name, body.role, body.password.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(json!(user))).into_response())
}

/// `GET /api/v1/users/{name}`.
#[utoipa::path(get, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    responses((status = 200, description = "The user", body = UserRow)))]
pub(crate) async fn get(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.user(&name).await?)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserChangeBody {
    #[schema(value_type = Option<String>, example = "operator")]
    role: Option<Role>,
    disabled: Option<bool>,
    password: Option<String>,
}

/// `PATCH /api/v1/users/{name}` `{"role"?, "disabled"?, "password"?}`.
#[utoipa::path(patch, path = "/api/v1/users/{name}", tag = "users", params(("name" = String, Path)),
    request_body = UserChangeBody, responses((status = 200, description = "The user, changed", body = UserRow)))]
pub(crate) async fn change(
    State(state): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<UserChangeBody>,
) -> ApiResult<Json<Value>> {
    let edit = UserEdit { role: body.role, disabled: body.disabled, password: body.password };
    Ok(Json(json!(state.service.change_user(&by, &name, edit).await?)))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTokenBody {
    /// How long it lasts (`30d`, `12h`); without it, until revoked.
    expires: Option<String>,
    /// What it is for, for the list.
    purpose: Option<String>,
}

/// `POST /api/v1/users/{name}/tokens` `{"expires"?: "30d"}`: 201 with the token, shown this
/// once.
#[utoipa::path(post, path = "/api/v1/users/{name}/tokens", tag = "users", params(("name" = String, Path)),
    request_body = NewTokenBody, responses((status = 201, description = "The token (its secret shown once)", body = IssuedToken)))]
pub(crate) async fn issue(
    State(state): State<AppState>,
    Caller(by): Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<NewTokenBody>,
) -> ApiResult<Response> {
    let lifetime = match &body.expires {
        Some(text) => Some(
            humantime::parse_duration(text)
                .map_err(|e| ApiError::BadRequest(format!("expires {text:?}: {e} (say 30d, 12h)")))?,
        ),
        None => None,
    };
    let purpose = body.purpose.as_deref().unwrap_or("api");
    let token = state.service.issue_token(&by, &name, lifetime, purpose).await?;
    Ok((StatusCode::CREATED, Json(json!(token))).into_response())
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TokensQuery {
    user: Option<String>,
}

/// `GET /api/v1/tokens?user=NAME`: ids, owners, expiry, revocation; never a secret.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "users", params(TokensQuery),
    responses((status = 200, description = "Tokens, newest first", body = Items<TokenRow>)))]
pub(crate) async fn tokens(State(state): State<AppState>, QueryOf(q): QueryOf<TokensQuery>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(Items { items: state.service.tokens(q.user.as_deref()).await? })))
}

/// `DELETE /api/v1/tokens/{id}`: refused from the next request on.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 204, description = "Revoked")))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Caller(by): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.service.revoke_token(&by, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/auth/logout`: revokes the token this request came with (the UI's log out).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "users",
    responses((status = 204, description = "The caller's token is revoked")))]
pub(crate) async fn logout(State(state): State<AppState>, Caller(by): Caller) -> ApiResult<StatusCode> {
    state.service.logout(&by).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/budgets`.
#[utoipa::path(get, path = "/api/v1/budgets", tag = "users",
    responses((status = 200, description = "Every fuel budget", body = Items<BudgetRow>)))]
pub(crate) async fn budgets(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(Items { items: state.service.budgets().await? })))
}

fn subject_of(kind: &str, subject: &str) -> ApiResult<BudgetSubject> {
    match kind {
        "user" => Ok(BudgetSubject::User(subject.to_string())),
        "role" => subject.parse::<Role>().map(BudgetSubject::Role).map_err(|e| ApiError::BadRequest(e.to_string())),
        other => Err(ApiError::BadRequest(format!("a budget is of a `user` or a `role`, not {other:?}"))),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BudgetBody {
    fuel_per_day: i64,
}

/// `PUT /api/v1/budgets/{kind}/{subject}` `{"fuel_per_day"}`: `kind` is `user` or `role`.
#[utoipa::path(put, path = "/api/v1/budgets/{kind}/{subject}", tag = "users",
    params(("kind" = String, Path), ("subject" = String, Path)), request_body = BudgetBody,
    responses((status = 204, description = "Set")))]
pub(crate) async fn set_budget(
    State(state): State<AppState>,
    Caller(by): Caller,
    Path((kind, subject)): Path<(String, String)>,
    JsonBody(body): JsonBody<BudgetBody>,
) -> ApiResult<StatusCode> {
    state.service.set_budget(&by, &subject_of(&kind, &subject)?, Some(body.fuel_per_day)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/v1/budgets/{kind}/{subject}`.
#[utoipa::path(delete, path = "/api/v1/budgets/{kind}/{subject}", tag = "users",
    params(("kind" = String, Path), ("subject" = String, Path)), responses((status = 204, description = "Removed")))]
pub(crate) async fn remove_budget(
    State(state): State<AppState>,
    Caller(by): Caller,
    Path((kind, subject)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.service.set_budget(&by, &subject_of(&kind, &subject)?, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/users/{name}/budget`: the user's fuel today against their budget.
#[utoipa::path(get, path = "/api/v1/users/{name}/budget", tag = "users", params(("name" = String, Path)),
    responses((status = 200, description = "Fuel used today, the budget, what remains", body = BudgetView)))]
pub(crate) async fn budget(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.service.budget_of(&name).await?)))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    actor: Option<String>,
    /// An action, or a prefix ending in `.` (`user.`).
    action: Option<String>,
    target: Option<String>,
    /// `ok` or `refused`.
    outcome: Option<String>,
    /// Entries older than this id (the next page: the last id of this one).
    before: Option<i64>,
    /// At most 1,000 (default 100).
    limit: Option<i64>,
}

/// `GET /api/v1/audit?actor=&action=&target=&outcome=&before=&limit=`: newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "users", params(AuditParams),
    responses((status = 200, description = "Audit entries, newest first", body = Items<AuditRow>)))]
pub(crate) async fn audit(State(state): State<AppState>, QueryOf(q): QueryOf<AuditParams>) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit {limit}: from 1 to 1000")));
    }
    let query = AuditQuery {
        actor: q.actor,
        action: q.action,
        target: q.target,
        outcome: q.outcome,
        before_id: q.before,
        limit,
    };
    Ok(Json(json!(Items { items: state.service.audit_log(&query).await? })))
}
