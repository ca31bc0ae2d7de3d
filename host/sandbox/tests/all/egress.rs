//! HTTP egress through wasi:http, against a real HTTP server on loopback: listed origins work,
//! everything else is refused (and said so in the log), the limits hold, and a recording replays
//! with the server gone.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use sandflow_sandbox::{HttpGrant, HttpReport, KillSwitch, LiveLog, TryGrants, TryReport};
use serde_json::{json, Value};

use crate::{context, output, quick, sandbox};

/// A test server on 127.0.0.1: `/hello`, `/echo` (POST), `/big?n=BYTES`, `/slow`, `/redirect-in`
/// (to `/hello`), `/redirect-out` (to `http://localhost:PORT/hello`, an origin not listed).
struct Server {
    port: u16,
    hits: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicU32::new(0));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let hits = counted.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        respond(request, port)
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Server { port, hits, task }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting: connections are refused from now on.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn respond(request: Request<hyper::body::Incoming>, port: u16) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let response =
        |status: u16, body: Bytes| Response::builder().status(status).header("x-test", "yes").body(Full::new(body));
    let response = match path.as_str() {
        "/hello" => response(200, Bytes::from_static(b"hello from the server")),
        "/echo" => {
            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            response(200, body)
        }
        "/big" => {
            let n: usize = query.trim_start_matches("n=").parse().unwrap_or(1 << 20);
            response(200, Bytes::from(vec![b'b'; n]))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            response(200, Bytes::from_static(b"late"))
        }
        "/redirect-in" => Response::builder().status(302).header("location", "/hello").body(Full::new(Bytes::new())),
        "/redirect-out" => Response::builder()
            .status(302)
            .header("location", format!("http://localhost:{port}/hello"))
            .body(Full::new(Bytes::new())),
        _ => response(404, Bytes::from_static(b"no such page")),
    };
    Ok(response.unwrap())
}

/// An allowance for the server's origin, private addresses allowed for it.
fn allowed(server: &Server) -> HttpGrant {
    HttpGrant { allow: vec![server.origin()], private_origins: vec![server.origin()], ..HttpGrant::default() }
}

async fn fetch(params: Value, http: Option<HttpGrant>) -> TryReport {
    let plugin = sandbox().load(&sandflow_test_artifacts::bytes("fetch")).unwrap();
    let grants = TryGrants { http, ..TryGrants::default() };
    sandbox().run_granted(&plugin, &context(params), &quick(), &grants, &KillSwitch::new(), &LiveLog::new()).await
}

fn http(report: &TryReport) -> &HttpReport {
    report.http.as_ref().unwrap_or_else(|| panic!("no HTTP report; log:\n{}", report.log))
}

#[tokio::test]
async fn an_allowed_origin_with_the_private_allowance_works() {
    let server = Server::start().await;
    let report = fetch(json!({"url": server.url("/hello")}), Some(allowed(&server))).await;
    let out = output(&report);
    assert_eq!(out["status"], 200, "{out}\n{}", report.log);
    assert_eq!(out["body"], "hello from the server");
    assert_eq!(out["headers"]["x-test"], "yes");
    assert_eq!(http(&report), &HttpReport { requests: 1, refused: 0, bytes: 21, exchanges: None });
    let line = format!("[sandflow] http: GET {} -> 200, 21 bytes", server.url("/hello"));
    assert!(report.log.contains(&line), "{}", report.log);

    let report =
        fetch(json!({"method": "POST", "url": server.url("/echo"), "body": "ping"}), Some(allowed(&server))).await;
    assert_eq!(output(&report)["body"], "ping", "{}", report.log);
    assert_eq!(http(&report).bytes, 8, "request and response bodies");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn loopback_without_the_private_allowance_is_refused() {
    let server = Server::start().await;
    let grant = HttpGrant { allow: vec![server.origin()], ..HttpGrant::default() };
    let report = fetch(json!({"url": server.url("/hello")}), Some(grant)).await;
    assert!(report.outcome.is_success(), "a refusal does not fail the try: {}", report.outcome);
    assert_eq!(output(&report)["error"], "ErrorCode::DestinationIpProhibited", "{}", report.log);
    let line = format!(
        "[sandflow] http: refused GET {}: 127.0.0.1 is a loopback address and the server does not allow private \
         addresses for this origin",
        server.url("/hello")
    );
    assert!(report.log.contains(&line), "{}", report.log);
    assert_eq!(http(&report), &HttpReport { requests: 0, refused: 1, bytes: 0, exchanges: None });

    // A name that resolves to loopback is refused just the same.
    let grant = HttpGrant { allow: vec![format!("http://localhost:{}", server.port)], ..HttpGrant::default() };
    let report = fetch(json!({"url": format!("http://localhost:{}/hello", server.port)}), Some(grant)).await;
    assert_eq!(output(&report)["error"], "ErrorCode::DestinationIpProhibited", "{}", report.log);
    assert!(report.log.contains("(localhost resolves to it)"), "{}", report.log);
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn origins_not_listed_and_tries_without_a_grant_are_refused() {
    let server = Server::start().await;
    let other_port = HttpGrant { allow: vec![format!("http://127.0.0.1:{}", server.port + 1)], ..allowed(&server) };
    let https_only = HttpGrant { allow: vec![format!("https://127.0.0.1:{}", server.port)], ..allowed(&server) };
    for grant in [other_port, https_only] {
        let report = fetch(json!({"url": server.url("/hello")}), Some(grant)).await;
        assert_eq!(output(&report)["error"], "ErrorCode::HttpRequestDenied", "{}", report.log);
        assert!(report.log.contains("is not an origin this task may reach"), "{}", report.log);
    }
    let report = fetch(json!({"url": server.url("/hello")}), None).await;
    assert_eq!(output(&report)["error"], "ErrorCode::HttpRequestDenied");
    assert!(report.log.contains("this task is granted no HTTP egress"), "{}", report.log);
    assert_eq!(http(&report).refused, 1);
    assert_eq!(server.hits(), 0);
    // No request at all: no HTTP report.
    let report = fetch(json!({"url": "nonsense"}), None).await;
    assert_eq!(report.http, None);
}

#[tokio::test]
async fn a_redirect_is_a_new_request_checked_like_the_first() {
    let server = Server::start().await;
    let report =
        fetch(json!({"url": server.url("/redirect-in"), "follow_redirects": true}), Some(allowed(&server))).await;
    let out = output(&report);
    assert_eq!((out["status"].clone(), out["body"].clone()), (json!(200), json!("hello from the server")), "{out}");
    assert_eq!(http(&report).requests, 2);

    let report =
        fetch(json!({"url": server.url("/redirect-out"), "follow_redirects": true}), Some(allowed(&server))).await;
    let out = output(&report);
    assert_eq!(out["error"], "ErrorCode::HttpRequestDenied", "{out}");
    assert_eq!(out["redirects"], json!([format!("http://localhost:{}/hello", server.port)]));
    assert!(report.log.contains(&format!("refused GET http://localhost:{}/hello", server.port)), "{}", report.log);
    // Not followed by the host: without following, the guest sees the 302.
    let report = fetch(json!({"url": server.url("/redirect-out")}), Some(allowed(&server))).await;
    assert_eq!(output(&report)["status"], 302);
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn the_request_count_bytes_and_timeout_limits_hold() {
    let server = Server::start().await;
    let one = HttpGrant { max_requests: 1, ..allowed(&server) };
    let report = fetch(json!({"url": server.url("/redirect-in"), "follow_redirects": true}), Some(one)).await;
    assert_eq!(output(&report)["error"], "ErrorCode::HttpRequestDenied", "{}", report.log);
    assert!(report.log.contains("the limit of 1 requests per try is reached"), "{}", report.log);
    assert_eq!(http(&report).requests, 1);

    let small = HttpGrant { max_bytes: 10_000, ..allowed(&server) };
    let report = fetch(json!({"url": server.url("/big?n=1000000")}), Some(small)).await;
    let error = output(&report)["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("body size exceeds limit: 10000 bytes"), "{error}\n{}", report.log);
    assert!(http(&report).bytes <= 10_000, "{:?}", report.http);
    assert!(report.log.contains("response cut at the byte limit of the try"), "{}", report.log);

    let hasty = HttpGrant { request_timeout: Duration::from_millis(300), ..allowed(&server) };
    let started = Instant::now();
    let report = fetch(json!({"url": server.url("/slow")}), Some(hasty)).await;
    assert_eq!(output(&report)["error"], "ErrorCode::ConnectionReadTimeout", "{}", report.log);
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_recording_replays_with_the_server_stopped() {
    let server = Server::start().await;
    let recording = HttpGrant { record: true, ..allowed(&server) };
    let params = json!({"url": server.url("/redirect-in"), "follow_redirects": true});
    let recorded = fetch(params.clone(), Some(recording.clone())).await;
    let exchanges = http(&recorded).exchanges.clone().expect("recorded exchanges");
    assert_eq!(exchanges.len(), 2, "{exchanges:?}");
    assert_eq!((exchanges[0].status, exchanges[1].status), (302, 200));
    assert_eq!(exchanges[1].url, server.url("/hello"));
    let url = server.url("/other");
    server.stop().await;

    let replay = HttpGrant { replay: Some(exchanges.clone()), ..recording };
    let replayed = fetch(params, Some(replay.clone())).await;
    assert_eq!(output(&replayed), output(&recorded), "{}", replayed.log);
    assert_eq!(http(&replayed).exchanges.as_ref(), Some(&exchanges), "a replay records what it served");
    assert!(replayed.log.contains("(replayed) -> 200, 21 bytes"), "{}", replayed.log);

    let missing = fetch(json!({"url": url}), Some(replay)).await;
    let error = output(&missing)["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(&format!("no recorded exchange for GET {url}")), "{error}");
}
