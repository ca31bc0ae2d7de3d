//! The web UI as the server serves it, over real HTTP: its page for `/` and every path the app
//! routes, its files under `/ui/` with versions, cache headers, ETags and types, JSON 404s kept
//! for the API's paths, the security headers, and no token needed for any of it.
//!
//! These tests need the built UI (`web/dist`, which `scripts/test.sh` builds first): debug
//! builds read it when they serve, and the tests compare what is served with its files.

use reqwest::header::{HeaderMap, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::Method;
use sandflow_api::Access;
use sha2::{Digest, Sha256};

use crate::Server;

/// A file of the built UI; a clear failure if the UI was not built.
fn dist(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist").join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}: the UI tests need the built web UI: run scripts/build-web.sh", path.display())
    })
}

/// The version the page gives a file in its URL: the first 16 hex digits of its SHA-256.
fn version(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// `GET path` without a token, with `headers`: status, headers, body.
async fn fetch(server: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
    request(server, Method::GET, path, headers).await
}

async fn request(server: &Server, method: Method, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
    let mut request = reqwest::Client::new().request(method, server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn header<'a>(headers: &'a HeaderMap, name: impl reqwest::header::AsHeaderName) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let csp = header(headers, "content-security-policy");
    assert_eq!(csp, sandflow_api::CONTENT_SECURITY_POLICY, "{what}");
    for needed in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"] {
        assert!(csp.contains(needed), "{what}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(header(headers, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(headers, "referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header(headers, "x-frame-options"), "DENY", "{what}");
}

#[tokio::test]
async fn the_page_answers_every_ui_path_with_versioned_assets_and_no_token() {
    let server = Server::start().await;
    let js = dist("app.js");
    let css = dist("app.css");
    let (status, headers, body) = fetch(&server, "/", &[]).await;
    let page = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(header(&headers, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&headers, CACHE_CONTROL), "no-cache");
    assert_security_headers(&headers, "GET /");
    assert!(page.contains(&format!("\"/ui/app.js?v={}\"", version(&js))), "{page}");
    assert!(page.contains(&format!("\"/ui/app.css?v={}\"", version(&css))), "{page}");
    assert!(!page.contains("\"/ui/app.js\"") && !page.contains("\"/ui/app.css\""), "every asset versioned: {page}");

    // The app routes the address itself: a reload of any of its paths gets the same page.
    for path in
        ["/dags", "/dags/ml_training", "/runs/manual__2026-01-01T00:00:00.5+00:00", "/admin?tab=users", "/x/y/z"]
    {
        let (status, headers, body) = fetch(&server, path, &[]).await;
        assert_eq!((status, String::from_utf8(body).unwrap()), (200, page.clone()), "{path}");
        assert_eq!(header(&headers, CACHE_CONTROL), "no-cache", "{path}");
    }

    // Revalidated by its ETag.
    let etag = header(&headers, ETAG).to_string();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let (status, _, body) = fetch(&server, "/dags", &[("if-none-match", &etag)]).await;
    assert_eq!((status, body.len()), (304, 0));

    // HEAD as GET, without the body.
    let (status, headers, body) = request(&server, Method::HEAD, "/", &[]).await;
    assert_eq!((status, header(&headers, CONTENT_TYPE), body.len()), (200, "text/html; charset=utf-8", 0));
}

#[tokio::test]
async fn assets_are_immutable_at_their_version_and_revalidated_otherwise() {
    let server = Server::start().await;
    for (name, mime) in [("app.js", "javascript"), ("app.css", "text/css")] {
        let bytes = dist(name);
        let current = format!("/ui/{name}?v={}", version(&bytes));
        let (status, headers, body) = fetch(&server, &current, &[]).await;
        assert_eq!(status, 200, "{current}");
        assert!(body == bytes, "{current}: the file's bytes");
        let content_type = header(&headers, CONTENT_TYPE);
        assert!(content_type.contains(mime) && content_type.ends_with("charset=utf-8"), "{name}: {content_type}");
        assert_eq!(header(&headers, CACHE_CONTROL), "public, max-age=31536000, immutable", "{current}");
        assert_security_headers(&headers, &current);
        let etag = header(&headers, ETAG).to_string();
        assert_eq!(etag, format!("\"{}\"", hex::encode(Sha256::digest(&bytes))));

        // Asked for without a version, or by an old one: the same bytes, revalidated each time.
        for other in [format!("/ui/{name}"), format!("/ui/{name}?v=0123456789abcdef")] {
            let (status, headers, body) = fetch(&server, &other, &[]).await;
            assert_eq!((status, body == bytes), (200, true), "{other}");
            assert_eq!(header(&headers, CACHE_CONTROL), "no-cache", "{other}");
            assert_eq!(header(&headers, ETAG), etag, "{other}");
        }

        // If-None-Match: 304 without a body; a list of tags, or a weak one, matches too.
        for sent in [etag.clone(), format!("\"other\", {etag}"), format!("W/{etag}")] {
            let (status, headers, body) = fetch(&server, &current, &[(IF_NONE_MATCH.as_str(), &sent)]).await;
            assert_eq!((status, body.len()), (304, 0), "{sent}");
            assert_eq!(header(&headers, ETAG), etag);
        }
        let (status, _, _) = fetch(&server, &current, &[("if-none-match", "\"stale\"")]).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn unknown_files_and_api_paths_are_json_404s_never_the_page() {
    let server = Server::start().await;
    dist("index.html");
    for path in [
        "/ui/nope.js",
        "/ui/index.html",
        "/ui/",
        "/ui",
        "/ui/..%2F..%2FCargo.toml",
        "/api/v1/nope",
        "/api/nope",
        "/api",
        "/auth/nope",
        "/healthz/nope",
        "/metrics/nope",
    ] {
        let (status, headers, body) = fetch(&server, path, &[]).await;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{path}: not JSON"));
        assert_eq!((status, body["code"].as_str()), (404, Some("no_route")), "{path}: {body}");
        assert!(header(&headers, CONTENT_TYPE).starts_with("application/json"), "{path}");
    }
    // Only a browser's GET of a page gets the page: a POST to one of its paths is a 404.
    let (status, _, body) = request(&server, Method::POST, "/dags/x", &[]).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["code"].as_str()), (404, Some("no_route")));
}

#[tokio::test]
async fn the_ui_is_public_in_the_access_table_and_out_of_the_openapi_document() {
    for method in [Method::GET, Method::HEAD] {
        assert_eq!(sandflow_api::access(&method, "/"), Some(Access::Public));
        assert_eq!(sandflow_api::access(&method, "/ui/{*file}"), Some(Access::Public));
    }
    let doc = serde_json::to_value(sandflow_api::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths
        .keys()
        .all(|p| p.starts_with("/api/") || p.starts_with("/auth/") || p == "/healthz" || p == "/metrics"));
    assert!(!paths.contains_key("/") && !paths.contains_key("/ui/{file}") && !paths.contains_key("/ui/{*file}"));

    // A bad token on the UI's paths is no reason to refuse them (the page then asks to log in).
    let server = Server::start().await;
    for path in ["/", "/dags/x", &format!("/ui/app.js?v={}", version(&dist("app.js")))] {
        let (status, _, _) = fetch(&server, path, &[("authorization", "Bearer sf_not-a-token")]).await;
        assert_eq!(status, 200, "{path}");
    }
}

#[tokio::test]
async fn the_security_headers_are_on_the_apis_answers_too() {
    let server = Server::start().await;
    for (path, status) in [("/healthz", 200), ("/api/v1/dags", 401), ("/api/v1/nope", 404)] {
        let (got, headers, _) = fetch(&server, path, &[]).await;
        assert_eq!(got, status, "{path}");
        assert_security_headers(&headers, path);
    }
}
