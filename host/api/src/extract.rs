//! Request bodies and query strings, read with our errors: a JSON body must say it is JSON
//! (415), must parse (400 with the line and column), and must fit its route's limit (413, refused
//! from its `Content-Length` before a byte is read, else as soon as it runs over).

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest JSON body (a trigger's conf, a mark): far more than any needs.
pub const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;

/// A JSON body of type `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        require_type(req.headers(), &["application/json"], "a JSON body (Content-Type: application/json)")?;
        // Read up to the limit even when Content-Length says more: refusing from the header
        // closes the connection while the client still sends, and many clients then report a
        // broken pipe instead of the 413. JSON bodies are small; bundles are refused early.
        let bytes = read_limited(req.into_body(), None, MAX_JSON_BYTES).await?;
        let text = if bytes.iter().all(u8::is_ascii_whitespace) { &b"{}"[..] } else { &bytes[..] };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| ApiError::BadRequest(format!("the JSON body: {e}")))
    }
}

/// Checks the request's `Content-Type` against `accepted` (parameters such as `charset` aside).
pub fn require_type(headers: &HeaderMap, accepted: &[&str], what: &str) -> Result<(), ApiError> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if accepted.contains(&essence.as_str()) {
        return Ok(());
    }
    let given = if given.is_empty() { "no Content-Type".to_string() } else { format!("Content-Type {given:?}") };
    Err(ApiError::UnsupportedMediaType(format!(
        "this route takes {what}, not {given} (accepted: {})",
        accepted.join(", ")
    )))
}

/// Reads a body of at most `limit` bytes: refused at once when `Content-Length` says more, and
/// as soon as more arrives otherwise.
pub async fn read_limited(body: Body, declared: Option<u64>, limit: usize) -> Result<Vec<u8>, ApiError> {
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The `Content-Length` a request declares.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// A query string of type `T`, with a 400 that says which parameter is wrong.
pub struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|query| QueryOf(query.0))
            .map_err(|e| ApiError::BadRequest(format!("the query string: {}", e.body_text())))
    }
}
