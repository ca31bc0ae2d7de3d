//! HTTP egress for components (wasi:http/outgoing-handler): our own `send_request`, so a request
//! reaches only the origins a task lists, never a private address unless the server allows it for
//! that origin, within a count, a byte budget and a timeout, and can be recorded and replayed.
//!
//! The address a request goes to is the one that was checked: the host is resolved once, every
//! address it resolves to must be public, and the connection is made to that address itself, so a
//! DNS answer that changes between the check and the connection (rebinding) cannot reach inside.

use std::collections::HashSet;
use std::future::Future as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::pipes::CappedPipe;

/// What a try may do over HTTP (wasi:http, components only).
#[derive(Debug, Clone)]
pub struct HttpGrant {
    /// Origins the try may reach: `https://api.example.com`, `http://127.0.0.1:8099` (scheme, host
    /// and port; a default port may be left out).
    pub allow: Vec<String>,
    /// The server's allowance: origins that may resolve to private, loopback, link-local (and other
    /// non-public) addresses. A request to any other origin that resolves to one is refused.
    pub private_origins: Vec<String>,
    /// Requests per try (refused ones do not count).
    pub max_requests: u32,
    /// Request and response body bytes per try; a response is cut at the limit.
    pub max_bytes: u64,
    /// Per request: to connect, to the first byte of the response, and between bytes.
    pub request_timeout: Duration,
    /// Keep every exchange in [`HttpReport::exchanges`].
    pub record: bool,
    /// Serve these exchanges (in order, matched by method and URL) and never touch the network; a
    /// request that was not recorded fails with an error naming it.
    pub replay: Option<Vec<HttpExchange>>,
}

impl Default for HttpGrant {
    /// Nothing allowed, and the limits a task gets when it names none: 100 requests, 64 MiB, 30 s.
    fn default() -> Self {
        HttpGrant {
            allow: Vec::new(),
            private_origins: Vec::new(),
            max_requests: 100,
            max_bytes: 64 << 20,
            request_timeout: Duration::from_secs(30),
            record: false,
            replay: None,
        }
    }
}

/// One request and its response, as recorded for a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpExchange {
    /// The request's method (`GET`).
    pub method: String,
    /// The request's URL (`https://api.example.com/v1/x?y=1`).
    pub url: String,
    /// The response's status.
    pub status: u16,
    /// The response's headers, in order.
    pub headers: Vec<(String, String)>,
    /// The response body, base64 (standard alphabet, padded).
    pub body_base64: String,
}

/// What a try did over HTTP.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpReport {
    /// Requests sent (or served from a replay).
    pub requests: u32,
    /// Requests refused (not allowed, private address, over a limit, not in the replay).
    pub refused: u32,
    /// Request and response body bytes.
    pub bytes: u64,
    /// The exchanges, when recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchanges: Option<Vec<HttpExchange>>,
}

/// A URL's origin: scheme, lowercase host (IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    fn of_uri(uri: &http::Uri) -> Option<Origin> {
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Some(Origin { https, host, port })
    }

    fn parse(text: &str) -> Option<Origin> {
        Origin::of_uri(&text.trim_end_matches('/').parse().ok()?)
    }
}

/// Why an address is not public, or `None` when it is.
fn private_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4).map(|_| "an IPv4-mapped non-public address");
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a unique local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if first == 0x0064 && v6.segments()[1] == 0xff9b {
                // NAT64 (64:ff9b::/96) reaches the IPv4 address in its low bits.
                let [.., a, b] = v6.segments();
                private_v4(Ipv4Addr::from((u32::from(a) << 16) | u32::from(b))).map(|_| "a NAT64 non-public address")
            } else {
                None
            }
        }
    }
}

fn private_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("a shared (CGNAT) address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_broadcast() {
        Some("a broadcast address")
    } else if a >= 240 {
        Some("a reserved address")
    } else {
        None
    }
}

/// The egress of one try: its grant, its log and its tally. Cheap to clone; clones share the tally.
#[derive(Clone)]
pub(crate) struct Egress {
    inner: Arc<Shared>,
}

struct Shared {
    grant: Option<HttpGrant>,
    allow: HashSet<Origin>,
    private: HashSet<Origin>,
    log: CappedPipe,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    report: HttpReport,
    /// Whether any request was made or refused (the report is `None` otherwise).
    used: bool,
    /// Which recorded exchanges a replay has served.
    replayed: Vec<bool>,
}

/// Why a request was not sent: an error for the guest and a line for the log.
struct Refusal(Error, String);

impl Egress {
    pub(crate) fn new(grant: Option<HttpGrant>, log: CappedPipe) -> Egress {
        let origins = |list: &[String]| list.iter().filter_map(|o| Origin::parse(o)).collect::<HashSet<_>>();
        let (allow, private) = match &grant {
            Some(g) => (origins(&g.allow), origins(&g.private_origins)),
            None => Default::default(),
        };
        let replayed = grant.as_ref().and_then(|g| g.replay.as_ref()).map_or(0, Vec::len);
        let tally = Tally { replayed: vec![false; replayed], ..Tally::default() };
        Egress { inner: Arc::new(Shared { grant, allow, private, log, tally: Mutex::new(tally) }) }
    }

    /// What the try did; `None` when it made no request.
    pub(crate) fn report(&self) -> Option<HttpReport> {
        let tally = self.inner.lock();
        tally.used.then(|| tally.report.clone())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn line(&self, text: &str) {
        self.log.write_host(format!("[sandflow] http: {text}\n").as_bytes());
    }

    fn refuse(&self, what: &str, refusal: Refusal) -> Error {
        let mut tally = self.lock();
        tally.used = true;
        tally.report.refused += 1;
        drop(tally);
        self.line(&format!("refused {what}: {}", refusal.1));
        refusal.0
    }

    fn failed(&self, what: &str, error: Error) -> Error {
        self.line(&format!("{what} failed: {}", describe(&error)));
        error
    }

    /// Takes `n` bytes from the try's budget; `false` (taking none) when they do not fit.
    fn spend(&self, n: u64) -> bool {
        let Some(grant) = &self.grant else { return false };
        let mut tally = self.lock();
        if tally.report.bytes.saturating_add(n) > grant.max_bytes {
            return false;
        }
        tally.report.bytes += n;
        true
    }

    /// Counts a request that is going out, if the try still may send one.
    fn admit(&self, origin: &Origin, grant: &HttpGrant) -> Result<(), Refusal> {
        if !self.allow.contains(origin) {
            let listed = if grant.allow.is_empty() { "none".to_string() } else { grant.allow.join(", ") };
            return Err(Refusal(
                Error::HttpRequestDenied,
                format!("{} is not an origin this task may reach (allowed: {listed})", display_origin(origin)),
            ));
        }
        let mut tally = self.lock();
        if tally.report.requests >= grant.max_requests {
            return Err(Refusal(
                Error::HttpRequestDenied,
                format!("the limit of {} requests per try is reached", grant.max_requests),
            ));
        }
        tally.used = true;
        tally.report.requests += 1;
        Ok(())
    }

    /// The addresses `origin` resolves to, if all are public or the origin may be private.
    async fn resolve(&self, origin: &Origin, timeout: Duration) -> Result<SocketAddr, Refusal> {
        let addrs: Vec<SocketAddr> = match origin.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
            Err(_) => match tokio::time::timeout(timeout, tokio::net::lookup_host((origin.host.as_str(), origin.port)))
                .await
            {
                Err(_) => return Err(Refusal(Error::DnsTimeout, format!("resolving {} timed out", origin.host))),
                Ok(Err(e)) => {
                    return Err(Refusal(
                        Error::DnsError { rcode: Some(e.to_string()), info_code: None },
                        format!("cannot resolve {}: {e}", origin.host),
                    ))
                }
                Ok(Ok(addrs)) => addrs.collect(),
            },
        };
        if !self.private.contains(origin) {
            for addr in &addrs {
                if let Some(kind) = private_kind(addr.ip()) {
                    let via = if origin.host.parse::<IpAddr>().is_ok() {
                        String::new()
                    } else {
                        format!(" ({} resolves to it)", origin.host)
                    };
                    return Err(Refusal(
                        Error::DestinationIpProhibited,
                        format!(
                            "{} is {kind}{via} and the server does not allow private addresses for this origin",
                            addr.ip()
                        ),
                    ));
                }
            }
        }
        addrs
            .first()
            .copied()
            .ok_or_else(|| Refusal(Error::DestinationNotFound, format!("{} resolves to no address", origin.host)))
    }
}

fn display_origin(origin: &Origin) -> String {
    let scheme = if origin.https { "https" } else { "http" };
    let host = if origin.host.contains(':') { format!("[{}]", origin.host) } else { origin.host.clone() };
    format!("{scheme}://{host}:{}", origin.port)
}

fn describe(error: &Error) -> String {
    match error {
        Error::Hyper(e) => e.to_string(),
        Error::Connect(e) => format!("cannot connect: {e}"),
        Error::Tls(e) => format!("TLS: {e}"),
        Error::ConnectionTimeout => "connecting timed out".into(),
        Error::ConnectionReadTimeout => "the response timed out".into(),
        Error::HttpResponseBodySize(_) => "the response is over the byte limit of the try".into(),
        other => format!("{other:?}"),
    }
}

/// rustls with the webpki roots and the ring provider, built once.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default TLS versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

type Sent = Result<(http::Response<WasiBody>, Box<dyn std::future::Future<Output = Result<(), Error>> + Send>), Error>;

impl WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn std::future::Future<Output = Sent> + Send> {
        let shared = self.inner.clone();
        Box::new(async move { send(shared, request, options).await })
    }
}

async fn send(shared: Arc<Shared>, request: http::Request<WasiBody>, options: Option<RequestOptions>) -> Sent {
    let method = request.method().to_string();
    let url = request.uri().to_string();
    let what = format!("{method} {url}");
    let Some(grant) = shared.grant.clone() else {
        let refusal = Refusal(Error::HttpRequestDenied, "this task is granted no HTTP egress".into());
        return Err(shared.refuse(&what, refusal));
    };
    let Some(origin) = Origin::of_uri(request.uri()) else {
        let refusal = Refusal(Error::HttpRequestUriInvalid, "the URL has no http or https origin".into());
        return Err(shared.refuse(&what, refusal));
    };
    if let Err(refusal) = shared.admit(&origin, &grant) {
        return Err(shared.refuse(&what, refusal));
    }

    // The request body, whole, within the byte budget.
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Err(shared.failed(&what, e)),
    };
    if !shared.spend(body.len() as u64) {
        let refusal = Refusal(
            Error::HttpRequestBodySize(Some(body.len() as u64)),
            format!("the request body ({} bytes) is over the byte limit of the try", body.len()),
        );
        return Err(shared.refuse(&what, refusal));
    }

    if let Some(replay) = &grant.replay {
        let found = {
            let mut tally = shared.lock();
            let index =
                (0..replay.len()).find(|&i| !tally.replayed[i] && replay[i].method == method && replay[i].url == url);
            if let Some(i) = index {
                tally.replayed[i] = true;
            }
            index
        };
        let Some(index) = found else {
            let refusal = Refusal(
                Error::InternalError(Some(format!("no recorded exchange for {what}"))),
                "not in the recording being replayed".into(),
            );
            return Err(shared.refuse(&what, refusal));
        };
        return replayed(&shared, &grant, &what, &replay[index]);
    }

    let per_request = |guest: Option<Duration>| guest.map_or(grant.request_timeout, |g| g.min(grant.request_timeout));
    let connect_timeout = per_request(options.and_then(|o| o.connect_timeout));
    let first_byte_timeout = per_request(options.and_then(|o| o.first_byte_timeout));
    let between_bytes = per_request(options.and_then(|o| o.between_bytes_timeout)).max(Duration::from_nanos(1));

    let addr = match shared.resolve(&origin, connect_timeout).await {
        Ok(addr) => addr,
        Err(refusal) => {
            // A request that was admitted but not sent gives its count back.
            shared.lock().report.requests -= 1;
            return Err(shared.refuse(&what, refusal));
        }
    };
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let error = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                Error::ConnectionRefused
            } else {
                Error::Connect(e)
            };
            return Err(shared.failed(&what, error));
        }
        Err(_) => return Err(shared.failed(&what, Error::ConnectionTimeout)),
    };
    let stream: Box<dyn Stream> = if origin.https {
        let name = match origin.host.parse::<IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => match rustls::pki_types::ServerName::try_from(origin.host.clone()) {
                Ok(name) => name,
                Err(_) => return Err(shared.failed(&what, Error::HttpRequestUriInvalid)),
            },
        };
        let tls = tokio_rustls::TlsConnector::from(tls_config());
        match tokio::time::timeout(connect_timeout, tls.connect(name, stream)).await {
            Ok(Ok(stream)) => Box::new(stream),
            Ok(Err(e)) => return Err(shared.failed(&what, Error::Tls(e))),
            Err(_) => return Err(shared.failed(&what, Error::ConnectionTimeout)),
        }
    } else {
        Box::new(stream)
    };
    let handshake = hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream));
    let (mut sender, conn) = match tokio::time::timeout(connect_timeout, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return Err(shared.failed(&what, e.into())),
        Err(_) => return Err(shared.failed(&what, Error::ConnectionTimeout)),
    };

    // On the wire, the request names its path only (the origin is the connection).
    let mut parts = parts;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    parts.uri = match http::Uri::builder().path_and_query(path).build() {
        Ok(uri) => uri,
        Err(_) => return Err(shared.failed(&what, Error::HttpRequestUriInvalid)),
    };
    let mut conn = Box::pin(conn);
    let response = tokio::time::timeout(first_byte_timeout, async {
        tokio::select! {
            response = sender.send_request(http::Request::from_parts(parts, Full::new(body))) => response.map_err(Error::from),
            ended = &mut conn => Err(match ended {
                Ok(()) => Error::HttpResponseIncomplete,
                Err(e) => e.into(),
            }),
        }
    })
    .await;
    let response = match response {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return Err(shared.failed(&what, e)),
        Err(_) => return Err(shared.failed(&what, Error::ConnectionReadTimeout)),
    };
    drop(sender);
    let (parts, incoming) = response.into_parts();
    let recorded = grant.record.then(|| HttpExchange {
        method: method.clone(),
        url: url.clone(),
        status: parts.status.as_u16(),
        headers: headers_of(&parts.headers),
        body_base64: String::new(),
    });
    let body = Counted {
        inner: incoming.map_err(Error::from).boxed_unsync(),
        shared: shared.clone(),
        what,
        status: parts.status.as_u16(),
        bytes: 0,
        between_bytes,
        idle: Box::pin(tokio::time::sleep(between_bytes)),
        recorded,
        kept: Vec::new(),
        ended: false,
    };
    let io = async move {
        match conn.await {
            Ok(()) => Ok(()),
            Err(e) if e.is_timeout() => Err(Error::HttpResponseTimeout),
            Err(e) => Err(e.into()),
        }
    };
    Ok((http::Response::from_parts(parts, body.boxed_unsync()), Box::new(io)))
}

/// A recorded exchange, served as a response.
fn replayed(shared: &Arc<Shared>, grant: &HttpGrant, what: &str, exchange: &HttpExchange) -> Sent {
    let body = match base64::engine::general_purpose::STANDARD.decode(&exchange.body_base64) {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            let error = Error::InternalError(Some(format!("the recorded body of {what} is not base64: {e}")));
            return Err(shared.failed(what, error));
        }
    };
    let mut response = http::Response::builder().status(exchange.status);
    for (name, value) in &exchange.headers {
        response = response.header(name, value);
    }
    let response = match response.body(()) {
        Ok(response) => response,
        Err(e) => return Err(shared.failed(what, Error::InternalError(Some(format!("recorded response: {e}"))))),
    };
    let (parts, ()) = response.into_parts();
    let recorded = grant.record.then(|| HttpExchange { body_base64: String::new(), ..exchange.clone() });
    let inner = Full::new(body).map_err(|never| match never {}).boxed_unsync();
    let between_bytes = grant.request_timeout.max(Duration::from_nanos(1));
    let body = Counted {
        inner,
        shared: shared.clone(),
        what: format!("{what} (replayed)"),
        status: exchange.status,
        bytes: 0,
        between_bytes,
        idle: Box::pin(tokio::time::sleep(between_bytes)),
        recorded,
        kept: Vec::new(),
        ended: false,
    };
    Ok((http::Response::from_parts(parts, body.boxed_unsync()), Box::new(async { Ok(()) })))
}

fn headers_of(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}

/// A response body that spends the try's byte budget as it streams, times out between bytes, keeps
/// the bytes when recording, and writes the request's log line when it ends or is dropped.
struct Counted {
    inner: WasiBody,
    shared: Arc<Shared>,
    what: String,
    status: u16,
    bytes: u64,
    between_bytes: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    recorded: Option<HttpExchange>,
    kept: Vec<u8>,
    ended: bool,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if !self.shared.spend(n) {
                        self.ended = true;
                        let limit = self.shared.grant.as_ref().map_or(0, |g| g.max_bytes);
                        self.shared.line(&format!(
                            "{}: response cut at the byte limit of the try ({})",
                            self.what,
                            crate::human_bytes(limit)
                        ));
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(limit)))));
                    }
                    self.bytes += n;
                    if self.recorded.is_some() {
                        let data = data.clone();
                        self.kept.extend_from_slice(&data);
                    }
                }
                let deadline = tokio::time::Instant::now() + self.between_bytes;
                self.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                self.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.idle.as_mut().poll(cx).is_ready() {
                    self.ended = true;
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Counted {
    /// Writes the log line and keeps the exchange (once).
    fn finish(&mut self, complete: bool) {
        let shared = self.shared.clone();
        if self.what.is_empty() {
            return;
        }
        let what = std::mem::take(&mut self.what);
        let cut = if complete { "" } else { " (not read to the end)" };
        shared.line(&format!("{what} -> {}, {} bytes{cut}", self.status, self.bytes));
        if let Some(mut exchange) = self.recorded.take() {
            exchange.body_base64 = base64::engine::general_purpose::STANDARD.encode(&self.kept);
            shared.lock().report.exchanges.get_or_insert_with(Vec::new).push(exchange);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_named() {
        let kind = |s: &str| private_kind(s.parse().unwrap());
        assert_eq!(kind("127.0.0.1"), Some("a loopback address"));
        assert_eq!(kind("10.1.2.3"), Some("a private address"));
        assert_eq!(kind("172.31.0.1"), Some("a private address"));
        assert_eq!(kind("192.168.1.1"), Some("a private address"));
        assert_eq!(kind("169.254.169.254"), Some("a link-local address"));
        assert_eq!(kind("100.64.0.1"), Some("a shared (CGNAT) address"));
        assert_eq!(kind("0.0.0.0"), Some("an unspecified address"));
        assert_eq!(kind("255.255.255.255"), Some("a broadcast address"));
        assert_eq!(kind("224.0.0.1"), Some("a multicast address"));
        assert_eq!(kind("::1"), Some("a loopback address"));
        assert_eq!(kind("fe80::1"), Some("a link-local address"));
        assert_eq!(kind("fd00::1"), Some("a unique local address"));
        assert_eq!(kind("::ffff:127.0.0.1"), Some("an IPv4-mapped non-public address"));
        assert_eq!(kind("64:ff9b::10.0.0.1"), Some("a NAT64 non-public address"));
        assert_eq!(kind("93.184.216.34"), None);
        assert_eq!(kind("100.128.0.1"), None);
        assert_eq!(kind("2606:4700::1111"), None);
    }

    #[test]
    fn origins_compare_by_scheme_host_and_port() {
        let o = |s: &str| Origin::parse(s).unwrap();
        assert_eq!(o("https://API.example.com"), o("https://api.example.com:443/"));
        assert_ne!(o("https://api.example.com"), o("http://api.example.com"));
        assert_ne!(o("http://127.0.0.1:8099"), o("http://127.0.0.1:8098"));
        assert_eq!(o("http://[::1]:80").host, "::1");
        assert!(Origin::parse("ftp://x").is_none());
    }
}
