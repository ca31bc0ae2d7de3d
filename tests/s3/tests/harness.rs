//! The harness tested as its callers use it: fresh buckets on whatever server this suite has, and
//! the private-server path in a child process of its own (the probe binary, run with
//! `SANDFLOW_TEST_S3_ENDPOINT` removed), so that this file runs the same whether the variable is
//! set (`scripts/test.sh`) or not (`cargo test`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use sandflow_test_s3::{fresh_bucket, server, ENDPOINT_VAR};

const PROBE: &str = env!("CARGO_BIN_EXE_sandflow-test-s3-probe");

/// `GET path` on `endpoint` (`http://HOST:PORT`), unsigned: the status line and the body.
fn get(endpoint: &str, path: &str) -> std::io::Result<(String, String)> {
    let authority = endpoint.strip_prefix("http://").expect("an http:// endpoint");
    let mut stream = TcpStream::connect(authority)?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or_default().to_owned();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

/// The bucket name and endpoint of a location `s3://NAME?endpoint=URL&...`.
fn parts(location: &str) -> (String, String) {
    let rest = location.strip_prefix("s3://").expect("an s3:// location");
    let (bucket, query) = rest.split_once('?').expect("a query");
    let endpoint = query.split('&').find_map(|kv| kv.strip_prefix("endpoint=")).expect("an endpoint parameter");
    (bucket.to_owned(), endpoint.to_owned())
}

#[test]
fn two_fresh_buckets_are_distinct_and_empty() {
    let a = fresh_bucket();
    let b = fresh_bucket();
    assert_ne!(a, b);
    for location in [&a, &b] {
        let (bucket, endpoint) = parts(location);
        let (status, body) = get(&endpoint, &format!("/{bucket}")).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "listing {bucket}: {status}");
        assert!(body.contains(&format!("<Name>{bucket}</Name>")), "{body}");
        assert!(!body.contains("<Contents>"), "{bucket} is not empty: {body}");
    }
    // A bucket that was never made is not there: the 200s above are the server's answer, not a default.
    let (bucket, endpoint) = parts(&a);
    let (status, _) = get(&endpoint, &format!("/{bucket}-never-made")).unwrap();
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
}

#[test]
fn the_server_is_the_configured_one_or_a_private_one() {
    let server = server();
    match std::env::var(ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.is_empty() => {
            assert_eq!(server.endpoint(), endpoint.trim_end_matches('/'));
            assert_eq!(server.private_dir(), None);
        }
        _ => {
            let dir = server.private_dir().expect("no variable, so a private server");
            assert!(dir.join("pid").exists(), "{} holds no pid file", dir.display());
        }
    }
}

#[test]
fn a_private_server_goes_with_its_process() {
    let child = Command::new(PROBE)
        .env_remove(ENDPOINT_VAR)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the probe");
    // The probe exits on its own; its stderr closes only when its watchdog has stopped the server.
    let output = child.wait_with_output().expect("waiting for the probe");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "probe failed:\n{stdout}\n{stderr}");
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {key} in the probe's output:\n{stdout}\n{stderr}"))
            .to_owned()
    };
    assert!(stdout.lines().any(|l| l == "ready"), "{stdout}");
    let dir = value("dir");
    assert_ne!(dir, "none", "the probe used a configured server");
    let endpoint = value("endpoint");
    let (bucket, bucket_endpoint) = parts(&value("bucket"));
    assert_eq!(bucket_endpoint, endpoint);
    assert!(bucket.starts_with("sandflow-"), "{bucket}");
    assert!(!std::path::Path::new(&dir).exists(), "{dir} is still there after the probe exited");
    // The server is gone: `scripts/s3.sh stop` returns once the process is, before the watchdog
    // closes the probe's stderr.
    assert!(get(&endpoint, "/").is_err(), "{endpoint} still answers after the probe exited");
}
