//! An ABI v2 operator that makes an HTTP request through wasi:http, for the sandbox's egress tests.
//! Params: `method` (default GET), `url`, `body` (text, optional), `follow_redirects` (default
//! false; up to 5, each one a new request that the host checks like the first). Output:
//! `{status, headers, body, redirects}`, or `{error, redirects}` when a request failed: a refused
//! request is an answer to report, not a failure of the task.

use sandflow_sdk::{json, Context, TaskResult, Value};
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, IncomingResponse, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

/// A response, read to its end.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn method_of(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    }
}

/// `scheme://authority/path?query` in its parts.
fn split_url(url: &str) -> Result<(Scheme, String, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("not an absolute URL: {url}"))?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path };
    Ok((scheme, authority.to_string(), path))
}

fn code(e: &ErrorCode) -> String {
    format!("{e:?}")
}

fn send(method: &str, url: &str, body: &[u8]) -> Result<Response, String> {
    let (scheme, authority, path) = split_url(url)?;
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&method_of(method)).map_err(|()| format!("bad method {method}"))?;
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme".to_string())?;
    request.set_authority(Some(&authority)).map_err(|()| format!("bad authority {authority}"))?;
    request.set_path_with_query(Some(&path)).map_err(|()| format!("bad path {path}"))?;
    let outgoing = request.body().map_err(|()| "no request body".to_string())?;
    let future = outgoing_handler::handle(request, None).map_err(|e| code(&e))?;
    {
        let stream = outgoing.write().map_err(|()| "no request body stream".to_string())?;
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| format!("writing the body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| code(&e))?;
    let response: IncomingResponse = loop {
        match future.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(e))) => return Err(code(&e)),
            Some(Err(())) => return Err("the response was already taken".into()),
            None => future.subscribe().block(),
        }
    };
    let status = response.status();
    let headers =
        response.headers().entries().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect();
    let incoming = response.consume().map_err(|()| "no response body".to_string())?;
    let mut body = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| "no response body stream".to_string())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    let detail =
                        wasi::http::types::http_error_code(&e).map_or_else(|| e.to_debug_string(), |c| code(&c));
                    return Err(format!("reading the body: {detail}"));
                }
            }
        }
    }
    Ok(Response { status, headers, body })
}

/// The next URL of a redirect: absolute, or a path on the same origin.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let origin = match base[origin_end..].find('/') {
        Some(i) => &base[..origin_end + i],
        None => base,
    };
    format!("{origin}{location}")
}

fn fetch(ctx: Context) -> Result<TaskResult, String> {
    let param = |name: &str| ctx.params.get(name).and_then(Value::as_str).map(str::to_string);
    let method = param("method").unwrap_or_else(|| "GET".into());
    let mut url = param("url").ok_or("params.url is missing")?;
    let body = param("body").unwrap_or_default();
    let follow = ctx.params.get("follow_redirects").and_then(Value::as_bool).unwrap_or(false);
    let mut redirects = Vec::new();
    loop {
        let response = match send(&method, &url, body.as_bytes()) {
            Ok(response) => response,
            Err(error) => return Ok(TaskResult::with_output(json!({ "error": error, "redirects": redirects }))),
        };
        let location =
            response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.clone());
        if follow && (300..400).contains(&response.status) && redirects.len() < 5 {
            if let Some(location) = location {
                url = resolve(&url, &location);
                redirects.push(url.clone());
                continue;
            }
        }
        let headers: serde_json::Map<String, Value> =
            response.headers.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        return Ok(TaskResult::with_output(json!({
            "status": response.status,
            "headers": headers,
            "body": String::from_utf8_lossy(&response.body),
            "redirects": redirects,
        })));
    }
}

sandflow_sdk::operator!(fetch);
