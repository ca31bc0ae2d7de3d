//! Errors as the API sends them: `{"code": "...", "message": "..."}` (and a bundle's
//! `diagnostics`), with the status chosen in one place, [`status_of`]. A server fault logs its
//! detail and sends only "internal error".

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sandflow_service::ServiceError;
use serde_json::json;

/// Anything a handler can answer instead of its result.
#[derive(Debug)]
pub enum ApiError {
    /// A use case refused.
    Service(ServiceError),
    /// The request itself is malformed (bad JSON with its position, a bad query parameter).
    BadRequest(String),
    /// The body is over the route's limit.
    TooLarge { limit: usize },
    /// The body's content type is not one the route takes.
    UnsupportedMediaType(String),
    /// No such route.
    NoRoute(String),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl From<sandflow_store::StoreError> for ApiError {
    fn from(e: sandflow_store::StoreError) -> Self {
        ApiError::Service(e.into())
    }
}

/// The status of each stable code: the one place they are mapped.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "bad_request" => StatusCode::BAD_REQUEST,
        "not_found" | "no_route" => StatusCode::NOT_FOUND,
        "conflict" | "lost_race" => StatusCode::CONFLICT,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid" | "bundle_rejected" | "invalid_plugin" => StatusCode::UNPROCESSABLE_ENTITY,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "unauthenticated" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        "too_many_attempts" | "over_budget" => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Service(e) => e.code(),
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::NoRoute(_) => "no_route",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = status_of(code);
        let body = match &self {
            ApiError::Service(e) if !e.is_callers() => {
                tracing::error!(error = %e, "internal error answering a request");
                json!({"code": code, "message": "internal error (the server's log has the detail)"})
            }
            ApiError::Service(ServiceError::BundleRejected(diagnostics)) => {
                json!({"code": code, "message": self.to_string(), "diagnostics": diagnostics})
            }
            ApiError::Service(ServiceError::OverBudget { user, used_today, fuel_per_day }) => json!({
                "code": code, "message": self.to_string(),
                "user": user, "used_today": used_today, "fuel_per_day": fuel_per_day,
            }),
            _ => json!({"code": code, "message": self.to_string()}),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::Service(ServiceError::TooManyAttempts { retry_after }) = &self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, (*retry_after).into());
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Service(e) => write!(f, "{e}"),
            ApiError::BadRequest(m) => f.write_str(m),
            ApiError::TooLarge { limit } => write!(f, "the body is over this route's limit of {limit} bytes"),
            ApiError::UnsupportedMediaType(m) => f.write_str(m),
            ApiError::NoRoute(path) => write!(f, "no route {path} (the API reference is docs/api.md)"),
        }
    }
}

/// A handler's result.
pub type ApiResult<T> = Result<T, ApiError>;
