//! The web UI: `web/dist` (built by `scripts/build-web.sh`) served from the binary.
//!
//! The page, `index.html`, answers `/` and every GET path a browser may show (the app routes the
//! address itself, so a reload of `/dags/x` works), always revalidated (`no-cache`). Its files
//! are under `/ui/`: the page is rewritten to name each as `/ui/app.js?v=VERSION` (the first 16
//! hex digits of its SHA-256), and a request with the current version may be cached for a year,
//! `immutable`; any other is revalidated. Every answer has an ETag and `If-None-Match` gets a 304.
//!
//! Release builds embed the files (build.rs reruns the build when `web/dist` changes); debug
//! builds read them from `web/dist` at every request, so a rebuilt UI needs no `cargo build`.
//! Without `web/dist` the binary still builds, and its page says how to build the UI.
//!
//! The UI calls only the public API. The headers of [`security_headers`] (a CSP that allows
//! only this server's own scripts, styles and connections, no framing) are set on every answer.

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::{EmbeddedFile, RustEmbed};
use serde::Deserialize;

use crate::error::ApiError;

#[derive(RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../../web/dist"]
#[allow_missing = true]
struct Dist;

/// The page every UI path answers.
const INDEX: &str = "index.html";

/// The Content-Security-Policy of every answer: scripts, styles, images, fonts and connections
/// from this server only (no inline script or style, no eval), images also as `data:` URLs; no
/// plugins, no `<base>`, no form posts, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// A year: what a versioned asset may be cached for (its URL changes with its bytes).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";

/// Prefixes of the server's own paths: a GET there that no route takes is a JSON 404, never the
/// UI's page.
const NOT_PAGES: [&str; 5] = ["/api", "/auth", "/healthz", "/metrics", "/ui"];

/// Whether a request no route takes is for the UI's page: a GET (or HEAD) outside the API's and
/// the assets' paths.
pub(crate) fn is_page(method: &Method, path: &str) -> bool {
    let reserved = NOT_PAGES
        .iter()
        .any(|prefix| path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')));
    (method == Method::GET || method == Method::HEAD) && !reserved
}

/// `GET /` (and every UI path, through the fallback): the page, with its assets' URLs versioned.
pub(crate) async fn index(headers: HeaderMap) -> Response {
    let Some(file) = Dist::get(INDEX) else {
        let message = "Sandflow's web UI was not built into this binary: run scripts/build-web.sh, then build \
                       sandflow again (a debug build reads web/dist/ when it serves). The HTTP API is at /api/v1.\n";
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, NO_CACHE)],
            message,
        )
            .into_response();
    };
    let page = versioned(&String::from_utf8_lossy(&file.data));
    let etag = etag_of(&sha256(page.as_bytes()));
    answer(&headers, "text/html; charset=utf-8", NO_CACHE, etag, page.into_bytes())
}

/// The query of an asset's URL.
#[derive(Deserialize)]
pub(crate) struct AssetQuery {
    v: Option<String>,
}

/// `GET /ui/{*file}`: a file of the UI; cacheable for a year when asked for by its version.
pub(crate) async fn asset(Path(name): Path<String>, Query(query): Query<AssetQuery>, headers: HeaderMap) -> Response {
    let Some(file) = Dist::get(&name).filter(|_| name != INDEX) else {
        return ApiError::NoRoute(format!("/ui/{}", sandflow_core::text::shorten(&name, 200))).into_response();
    };
    let hash = file.metadata.sha256_hash();
    let cache = if query.v.as_deref() == Some(version_of(&hash).as_str()) { IMMUTABLE } else { NO_CACHE };
    answer(&headers, &content_type(&file), cache, etag_of(&hash), file.data.into_owned())
}

/// An answer of `body`, or a 304 when the request's `If-None-Match` names its ETag.
fn answer(request: &HeaderMap, content_type: &str, cache: &'static str, etag: String, body: Vec<u8>) -> Response {
    let etag = HeaderValue::from_str(&etag).expect("an ETag is hex in quotes");
    let cache = HeaderValue::from_static(cache);
    if matches_etag(request, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)]).into_response();
    }
    let content_type =
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, content_type), (header::ETAG, etag), (header::CACHE_CONTROL, cache)], body).into_response()
}

/// Whether `If-None-Match` holds `etag` (or `*`); weak tags compare by their value.
fn matches_etag(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.to_str().unwrap_or_default();
    request.get_all(header::IF_NONE_MATCH).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |tag| {
            let tag = tag.trim();
            tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
        },
    )
}

/// The page with every `"/ui/FILE"` it names (in quotes, as `src` and `href` hold them) as
/// `"/ui/FILE?v=VERSION"`.
fn versioned(page: &str) -> String {
    let mut page = page.to_string();
    for name in Dist::iter().filter(|name| name != INDEX) {
        let Some(file) = Dist::get(&name) else { continue };
        let version = version_of(&file.metadata.sha256_hash());
        for quote in ['"', '\''] {
            let plain = format!("{quote}/ui/{name}{quote}");
            page = page.replace(&plain, &format!("{quote}/ui/{name}?v={version}{quote}"));
        }
    }
    page
}

/// A file's version in its URL: the first 16 hex digits of its SHA-256.
fn version_of(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..8])
}

fn etag_of(hash: &[u8; 32]) -> String {
    format!("\"{}\"", hex::encode(hash))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The type from the file's extension, with the charset for text (esbuild writes UTF-8).
fn content_type(file: &EmbeddedFile) -> String {
    let mime = file.metadata.mimetype();
    let textual = mime.starts_with("text/") || mime == "application/javascript" || mime == "application/json";
    if textual && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

/// Sets the security headers on an answer that has none of its own (on every answer: the UI's
/// pages need them and they cost the API's JSON nothing).
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in set {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_every_get_outside_the_servers_own_paths() {
        for path in ["/", "/dags", "/dags/x", "/runs/manual__2026-01-01T00:00:00.5+00:00", "/apis", "/uix", "/login"] {
            assert!(is_page(&Method::GET, path), "{path}");
            assert!(is_page(&Method::HEAD, path), "{path}");
        }
        for path in
            ["/api", "/api/v1/nope", "/api/v2/x", "/auth/token", "/healthz", "/healthz/x", "/metrics", "/ui", "/ui/x"]
        {
            assert!(!is_page(&Method::GET, path), "{path}");
        }
        assert!(!is_page(&Method::POST, "/dags/x"));
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_a_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        for (sent, hit) in
            [("\"abc\"", true), ("W/\"abc\"", true), ("\"x\", \"abc\"", true), ("*", true), ("\"ab\"", false)]
        {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static(sent));
            assert_eq!(matches_etag(&headers, &etag), hit, "{sent}");
        }
        assert!(!matches_etag(&HeaderMap::new(), &etag));
    }
}
