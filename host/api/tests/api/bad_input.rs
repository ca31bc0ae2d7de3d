//! Every bad input gets a clear error, and nothing is half-written.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{chain_dag, enc, targz, Server};

/// A .tar.gz with one raw entry whose name and type are written by hand (what `tar::Builder`
/// refuses to write: `..`, links, devices).
fn raw_entry(name: &[u8], kind: tar::EntryType, link: Option<&str>, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, bytes) in extra {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(kind);
    header.set_size(0);
    header.set_mode(0o644);
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_cksum();
    builder.append(&header, std::io::empty()).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

async fn nothing_stored(server: &Server) {
    assert!(server.store.dags().await.unwrap().is_empty(), "no DAG was stored");
    assert!(server.store.plugins().await.unwrap().is_empty(), "no plugin was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_whole_with_every_diagnostic() {
    let server = Server::start().await;
    let dag = chain_dag("ok", 1, 1);
    let echo = sandflow_test_artifacts::bytes("echo");
    let good: [(&str, &[u8]); 2] = [("ok.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo)];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("parent_component", raw_entry(b"../x.toml", tar::EntryType::Regular, None, &good)),
        ("absolute_path", raw_entry(b"/etc/x.toml", tar::EntryType::Regular, None, &good)),
        ("symlink", raw_entry(b"plugins/link.wasm", tar::EntryType::Symlink, Some("/etc/passwd"), &good)),
        ("hard_link", raw_entry(b"plugins/hard.wasm", tar::EntryType::Link, Some("ok.toml"), &good)),
        ("device", raw_entry(b"dev.wasm", tar::EntryType::Char, None, &good)),
        ("not_an_archive", b"this is not an archive at all".to_vec()),
    ];
    for (code, bundle) in cases {
        let (status, body) = server.push(bundle, "", "mallory").await;
        assert_eq!(status, 422, "{code}: {body}");
        assert_eq!(body["code"], "bundle_rejected", "{code}: {body}");
        let codes: Vec<_> =
            body["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
        assert!(codes.contains(&code), "{code}: {body}");
        nothing_stored(&server).await;
    }
    // 10,001 tiny entries: over the entry limit, refused.
    let names: Vec<String> = (0..10_001).map(|i| format!("f/{i}.txt")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let (status, body) = server.push(targz(&files), "", "mallory").await;
    assert_eq!((status, body["diagnostics"][0]["code"].as_str()), (422, Some("too_many_entries")), "{body}");
    nothing_stored(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_dag_or_plugin_among_good_ones_stores_nothing() {
    let server = Server::start().await;
    let echo = sandflow_test_artifacts::bytes("echo");
    let (good, broken) = (
        chain_dag("good", 2, 1),
        "id = \"broken\"\n[tasks.a]\nplugin = \"plugins/echo.wasm\"\nupstream = [\"nope\"]\nretries = \"many\"\n",
    );
    let bundle =
        targz(&[("good.toml", good.as_bytes()), ("broken.toml", broken.as_bytes()), ("plugins/echo.wasm", &echo)]);
    let (status, body) = server.push(bundle, "", "alice").await;
    assert_eq!(status, 422, "{body}");
    let diagnostics = body["diagnostics"].as_array().unwrap();
    assert!(diagnostics.len() >= 2, "every problem, not the first: {body}");
    for d in diagnostics {
        assert_eq!((d["code"].as_str(), d["file"].as_str()), (Some("invalid_dag"), Some("broken.toml")), "{d}");
        assert!(d["line"].as_u64().unwrap() >= 3 && d["column"].as_u64().is_some() && d["field"].is_string(), "{d}");
    }
    nothing_stored(&server).await;
    // A .wasm that is not wasm, though no DAG uses it.
    let bundle =
        targz(&[("good.toml", good.as_bytes()), ("plugins/echo.wasm", &echo), ("plugins/fake.wasm", b"MZ not wasm")]);
    let (status, body) = server.push(bundle, "", "alice").await;
    assert_eq!((status, body["diagnostics"][0]["code"].as_str()), (422, Some("invalid_plugin")), "{body}");
    assert_eq!(body["diagnostics"][0]["file"], "plugins/fake.wasm");
    nothing_stored(&server).await;
    let (status, body) =
        server.post_bytes("/api/v1/plugins", "application/wasm", b"\0asm\x01\0\0\0garbage".to_vec(), "a").await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid_plugin")), "{body}");
    // Two DAG files declaring one id.
    let bundle = targz(&[("a.toml", good.as_bytes()), ("b.toml", good.as_bytes()), ("plugins/echo.wasm", &echo)]);
    let (_, body) = server.push(bundle, "", "alice").await;
    assert_eq!(body["diagnostics"][0]["code"], "duplicate_dag_id", "{body}");
    nothing_stored(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_from_its_length_before_it_is_sent() {
    let server = Server::start().await;
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/bundles HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/gzip\r\nContent-Length: 10000000000\r\nAuthorization: Bearer {}\r\n\r\n",
        server.admin_token
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    // Not one byte of the 10 GB body is sent: the answer comes from the header alone.
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"code\":\"payload_too_large\""), "{answer}");
    // A body with no length that runs over the limit is cut off as it arrives.
    let big = vec![0u8; 5 * 1024 * 1024];
    let (status, body) = server.post_bytes("/api/v1/dags/x/runs", "application/json", big, "a").await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_unknown_ids_and_markup_get_clear_answers() {
    let server = Server::start().await;
    let echo = sandflow_test_artifacts::bytes("echo");
    let dag = "id = \"held\"\nis_paused_upon_creation = true\n[tasks.a]\nplugin = \"plugins/echo.wasm\"\n";
    assert_eq!(
        server.push(targz(&[("held.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo)]), "", "a").await.0,
        201
    );
    // Malformed JSON: 400 with the position.
    let (status, body) =
        server.post_bytes("/api/v1/dags/held/runs", "application/json", b"{\"conf\": {".to_vec(), "a").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("line 1 column 10"), "{body}");
    let (status, body) =
        server.post_bytes("/api/v1/dags/held/runs", "application/json", b"{\"cnof\": {}}".to_vec(), "a").await;
    assert!(status == 400 && body["message"].as_str().unwrap().contains("cnof"), "a typo is named: {body}");
    // Wrong content type: 415.
    let (status, body) = server.post_bytes("/api/v1/dags/held/runs", "text/plain", b"{}".to_vec(), "a").await;
    assert_eq!((status, body["code"].as_str()), (415, Some("unsupported_media_type")), "{body}");
    let (status, _) = server.post_bytes("/api/v1/bundles", "application/json", b"{}".to_vec(), "a").await;
    assert_eq!(status, 415);
    // Unknown ids: 404, saying what is missing.
    for path in [
        "/api/v1/dags/nope",
        "/api/v1/dags/nope/runs",
        "/api/v1/dags/held/versions/v0000",
        "/api/v1/runs/nope",
        "/api/v1/runs/nope/tasks/a/tries",
        "/api/v1/plugins/sha256:00",
        "/api/v1/actions/12345",
        "/api/v1/no/such/route",
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["code"].is_string() && body["message"].is_string(), "{path}: {body}");
    }
    let (status, _) = server.post("/api/v1/dags/nope/runs", json!({})).await;
    assert_eq!(status, 404);
    // A paused DAG's trigger is accepted and queued, and says it is paused.
    let (status, run) = server.post("/api/v1/dags/held/runs", json!({"note": "<script>alert(1)</script>"})).await;
    assert_eq!(
        (status, run["state"].as_str(), run["dag_paused"].as_bool()),
        (201, Some("queued"), Some(true)),
        "{run}"
    );
    // Markup round-trips as data: in JSON, never interpreted.
    let (_, again) = server.get(&format!("/api/v1/runs/{}", enc(run["run_id"].as_str().unwrap()))).await;
    assert_eq!(again["note"], "<script>alert(1)</script>");
    let response =
        server.http.get(server.url(&format!("/api/v1/dags/{}", enc("<script>x</script>")))).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("<script>x</script>"), "{body}");
    let evil = "id = \"<script>\"\n[tasks.a]\nplugin = \"plugins/echo.wasm\"\n";
    let (status, body) =
        server.push(targz(&[("evil.toml", evil.as_bytes()), ("plugins/echo.wasm", &echo)]), "", "a").await;
    assert_eq!(status, 422);
    assert!(body["diagnostics"][0]["message"].as_str().unwrap().contains("<script>"), "{body}");
    // A bad query parameter.
    let (status, body) = server.get("/api/v1/runs?state=exploded").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.get("/api/v1/runs?cursor=zz").await;
    assert_eq!((status, body["code"].as_str()), (422, Some("invalid")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_store_a_plugin_once_and_concurrent_pushes_both_land() {
    let server = std::sync::Arc::new(Server::start().await);
    let echo = sandflow_test_artifacts::bytes("echo");
    let uploads: Vec<_> = (0..6)
        .map(|_| {
            let (server, echo) = (server.clone(), echo.clone());
            tokio::spawn(async move { server.post_bytes("/api/v1/plugins", "application/wasm", echo, "a").await })
        })
        .collect();
    let mut created = 0;
    for upload in uploads {
        let (status, body) = upload.await.unwrap();
        assert!(status == 201 || status == 200, "{body}");
        created += usize::from(body["new"] == true);
    }
    assert_eq!((created, server.store.plugins().await.unwrap().len()), (1, 1));
    let pushes: Vec<_> = (0..4)
        .map(|i| {
            let (server, echo) = (server.clone(), echo.clone());
            tokio::spawn(async move {
                let dag = chain_dag("racy", 2, i);
                server.push(targz(&[("racy.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo)]), "", "a").await
            })
        })
        .collect();
    let mut versions = std::collections::BTreeSet::new();
    for push in pushes {
        let (status, body) = push.await.unwrap();
        assert_eq!(status, 201, "{body}");
        versions.insert(body["dags"][0]["version"].as_str().unwrap().to_string());
    }
    let (_, listed) = server.get("/api/v1/dags/racy/versions").await;
    let stored: std::collections::BTreeSet<_> =
        listed["items"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap().to_string()).collect();
    assert_eq!(stored, versions, "every push landed, intact");
    for version in &versions {
        let (status, spec) = server.get(&format!("/api/v1/dags/racy/versions/{version}")).await;
        assert_eq!((status, spec["tasks"].as_array().unwrap().len()), (200, 2), "{spec}");
    }
}

/// This process's resident memory and its peak since the last reset, in MiB (Linux).
fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    (field("VmRSS:").unwrap() / 1024, field("VmHWM:").unwrap() / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bombs_of_10_gib_are_refused_over_http_with_the_servers_memory_bounded() {
    let server = Server::start().await;
    for (name, bomb, codes) in [
        ("one file", sandflow_bundle::bomb::one_file_of_10_gib(), vec!["file_too_large", "unpacked_too_large"]),
        ("many files", sandflow_bundle::bomb::many_files_of_10_gib(), vec!["unpacked_too_large"]),
    ] {
        assert!(bomb.len() < 64 << 20, "{name}: under the archive limit, so it is read: {}", bomb.len());
        // The peak is reset (Linux's clear_refs), so what follows is this upload's (and whatever
        // else this test binary runs meanwhile: the bound is loose, but 10 GiB would break it).
        std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS");
        let (before, _) = memory_mib();
        let (status, body) = server.push(bomb, "", "mallory").await;
        let (_, peak) = memory_mib();
        assert_eq!(status, 422, "{name}: {body}");
        let got: Vec<&str> =
            body["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
        assert_eq!(got, codes, "{name}: {body}");
        // At most the unpacked limit (256 MiB) is ever inflated and kept, plus the body itself.
        println!("{name}: RSS {before} MiB before, peak {peak} MiB during the upload");
        assert!(peak < before + 640, "{name}: the server's peak RSS rose from {before} to {peak} MiB");
    }
    nothing_stored(&server).await;
}
