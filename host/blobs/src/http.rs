//! object_store's HTTP transport, on the workspace's reqwest 0.12.
//!
//! object_store 0.14's own transport (its `reqwest` feature, which `aws` turns on) is reqwest 0.13
//! with rustls on aws-lc-rs: a second HTTP client, TLS stack and crypto library (and a C build)
//! beside the reqwest 0.12 + rustls + ring + webpki roots the rest of the workspace uses. So the S3
//! client is built from `aws-base` (no transport) and gets this one through `HttpConnector`: the
//! same request and response types (`http` 1, `http-body` 1), so the adapter only moves bodies.
//!
//! Of object_store's client options it honours `allow_http` (else https only), `connect_timeout`
//! and `read_timeout`; its total `timeout` (30 s by default) is applied as a read timeout (at most
//! that long between two reads) instead, because a total deadline would fail any artifact too big
//! to move in 30 s. Proxies come from the usual environment (`HTTPS_PROXY`, ...) as reqwest reads
//! it; object_store's proxy, extra root certificate and HTTP/2 options are not supported.

use std::error::Error as _;
use std::time::Duration;

use http_body_util::BodyExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions};

/// Builds [`Reqwest`] clients for object_store.
#[derive(Debug, Default)]
pub(crate) struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let duration =
            |key: ClientConfigKey| options.get_config_value(&key).and_then(|v| humantime::parse_duration(&v).ok());
        let allow_http = options.get_config_value(&ClientConfigKey::AllowHttp).is_some_and(|v| v == "true");
        let mut builder = reqwest::Client::builder()
            .https_only(!allow_http)
            .user_agent(concat!("sandflow/", env!("CARGO_PKG_VERSION")));
        if let Some(timeout) = duration(ClientConfigKey::ConnectTimeout) {
            builder = builder.connect_timeout(timeout);
        }
        let read_timeout: Option<Duration> =
            duration(ClientConfigKey::ReadTimeout).or_else(|| duration(ClientConfigKey::Timeout));
        if let Some(timeout) = read_timeout {
            builder = builder.read_timeout(timeout);
        }
        let client = builder.build().map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        Ok(HttpClient::new(Reqwest(client)))
    }
}

/// One reqwest 0.12 client as object_store's [`HttpService`].
#[derive(Debug)]
struct Reqwest(reqwest::Client);

#[async_trait::async_trait]
impl HttpService for Reqwest {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string()).map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?;
        let mut request = reqwest::Request::new(parts.method, url);
        *request.headers_mut() = parts.headers;
        *request.body_mut() = Some(reqwest::Body::wrap(body));
        let response = self.0.execute(request).await.map_err(http_error)?;
        let response: http::Response<reqwest::Body> = response.into();
        let (parts, body) = response.into_parts();
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body.map_err(http_error))))
    }
}

/// A reqwest error as object_store's, with the kind that decides whether it retries (connect,
/// request, timeout and interrupted errors are retried).
fn http_error(e: reqwest::Error) -> HttpError {
    let mut kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else if e.is_request() || e.is_body() {
        HttpErrorKind::Request
    } else {
        HttpErrorKind::Unknown
    };
    let mut source = e.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                TimedOut => kind = HttpErrorKind::Timeout,
                ConnectionAborted | ConnectionReset | BrokenPipe | UnexpectedEof => kind = HttpErrorKind::Interrupted,
                _ => {}
            }
        }
        source = inner.source();
    }
    // The URL is left out: object_store's retry error names the request itself.
    HttpError::new(kind, e.without_url())
}
