//! A real S3-compatible server for the tests, and a fresh empty bucket on it for every test that
//! asks: [`fresh_bucket`] returns the `s3://` location of a bucket no other test has seen, in the
//! form `sandflow_blobs::Blobs::open` takes.
//!
//! **Which server.** The server is moto (`moto[server]` from PyPI, in a virtualenv that
//! `scripts/s3.sh` makes under `target/s3-venv` and keeps between runs). When
//! `SANDFLOW_TEST_S3_ENDPOINT` ([`ENDPOINT_VAR`]) is set, it is the endpoint of a server someone
//! else runs: `scripts/test.sh` (and so CI) starts one for the whole run, so the test processes of
//! one run share it. When it is not set (a developer's `cargo test`), the first call in a test
//! process starts a server for that process on a free loopback port, and every later call in the
//! process uses it. There is no third option: a machine where the venv cannot be made (no
//! `python3-venv`, no PyPI) makes these tests panic, saying so, rather than skip.
//!
//! **One script starts servers.** `scripts/s3.sh VENV start DIR` makes the venv if needed, starts
//! `moto_server` on a free port (in a session of its own, so a Ctrl-C to the test's process group
//! does not kill it under a running test), waits until it answers and prints its endpoint;
//! `scripts/s3.sh VENV stop DIR` stops it. `scripts/test.sh` uses the same two commands.
//!
//! **Stopping it when the process exits.** As in `sandflow-test-postgres`: the process spawns a
//! watchdog (`sh`) whose standard input is a pipe only this process holds open. The watchdog runs
//! the start, hands the endpoint back on its stdout, blocks reading the pipe, and when the process
//! ends however it ends (exit, panic, Ctrl-C, `kill -9`) the kernel closes the pipe and the
//! watchdog runs the stop. The watchdog ignores SIGINT, SIGHUP and SIGTERM, and keeps the test
//! process's standard error open until it is done, so a parent that reads a test process's stderr
//! to its end knows the private server is gone (this crate's own tests rely on that).
//!
//! **Buckets.** Each [`fresh_bucket`] is a `CreateBucket` (a plain `PUT /NAME`, which moto takes
//! unsigned), named after the process id, the time and a counter, so processes sharing one server
//! never collide. Buckets are not deleted: moto keeps them in memory and the whole server goes at
//! the end of the run (or of the process). moto takes any credentials; the location carries the
//! fixed ones ([`ACCESS_KEY_ID`], [`SECRET_ACCESS_KEY`]) so the client under test signs its
//! requests as it would against real S3.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The endpoint (`http://127.0.0.1:PORT`) of an S3-compatible server to use instead of starting
/// one (set by `scripts/test.sh`).
pub const ENDPOINT_VAR: &str = "SANDFLOW_TEST_S3_ENDPOINT";

/// The region in every location [`fresh_bucket`] returns (moto accepts any).
pub const REGION: &str = "us-east-1";

/// The access key in every location [`fresh_bucket`] returns (moto accepts any).
pub const ACCESS_KEY_ID: &str = "sandflow-test";

/// The secret key in every location [`fresh_bucket`] returns (moto accepts any).
pub const SECRET_ACCESS_KEY: &str = "sandflow-test-secret";

/// The script that makes the venv and starts and stops servers, from this crate's place in the tree.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/s3.sh");

/// Where the venv with moto lives: the workspace's `target/`, where `scripts/test.sh` puts it too,
/// so one install serves every test process and every run.
const VENV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/s3-venv");

/// The watchdog's program, run by `sh -c WATCHDOG SCRIPT VENV DIR`: start the server with its state
/// in DIR (the endpoint, or why it did not start, on stdout, which is then closed), block until
/// this process's end of the pipe on its stdin closes, then stop the server and remove DIR.
const WATCHDOG: &str = r#"trap '' INT HUP TERM
bash "$0" "$1" start "$2" 2>&1
exec >/dev/null
cat
exec bash "$0" "$1" stop "$2""#;

/// The server the tests of this process use.
pub struct Server {
    endpoint: String,
    private: Option<PrivateServer>,
}

/// A server this process started: its directory (pid, log), and the write end of the watchdog's
/// pipe, held (never written) for the life of the process.
struct PrivateServer {
    dir: PathBuf,
    _watchdog: ChildStdin,
}

impl Server {
    /// The server's endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The directory of the server this process started (its pid file and log), or `None` when
    /// the server is the one [`ENDPOINT_VAR`] names. It is removed when the process ends.
    pub fn private_dir(&self) -> Option<&Path> {
        self.private.as_ref().map(|p| p.dir.as_path())
    }
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("creating a temporary directory for a private moto server: {0}")]
    TempDir(#[source] io::Error),
    #[error("spawning the watchdog that starts and stops the private moto server (sh): {0}")]
    Watchdog(#[source] io::Error),
    #[error("reading the private moto server's start: {0}")]
    Read(#[source] io::Error),
    #[error(
        "no S3 server for the tests: `scripts/s3.sh {VENV} start` printed no endpoint (it needs python3 with \
         venv, Debian's python3-venv, and moto[server] from PyPI; or set {ENDPOINT_VAR} to a running \
         server):\n{0}"
    )]
    Start(String),
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// The server of this process's tests: the one [`ENDPOINT_VAR`] names, or a private one started on
/// the first call (see the crate's documentation; the first call may take a minute when the venv
/// has to be made). Blocks; panics when there is no server, saying why and how to get one.
pub fn server() -> &'static Server {
    match SERVER.get_or_init(|| start().map_err(|e| e.to_string())) {
        Ok(server) => server,
        Err(error) => panic!("{error}"),
    }
}

/// The endpoint of the tests' server ([`server`]), for a child test process (as [`ENDPOINT_VAR`]).
pub fn endpoint() -> String {
    server().endpoint.clone()
}

/// The `s3://` location of a new, empty bucket on the tests' server, named so that no other call,
/// in this process or another, gets the same one: `s3://NAME?endpoint=...&region=...&allow_http=true
/// &access_key_id=...&secret_access_key=...`. Blocks; panics when the bucket cannot be made.
pub fn fresh_bucket() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let endpoint = endpoint();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // Lower-case letters, digits and hyphens, under S3's 63 characters.
    let bucket = format!("sandflow-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let status = raw_request(&endpoint, "PUT", &format!("/{bucket}"))
        .unwrap_or_else(|e| panic!("creating bucket {bucket} on {endpoint}: {e}"));
    assert!(status.starts_with("HTTP/1.1 200"), "creating bucket {bucket} on {endpoint}: {status}");
    location(&endpoint, &bucket)
}

/// The location of `bucket` on the server at `endpoint`, with the tests' region and credentials.
pub fn location(endpoint: &str, bucket: &str) -> String {
    format!(
        "s3://{bucket}?endpoint={endpoint}&region={REGION}&allow_http=true&access_key_id={ACCESS_KEY_ID}\
         &secret_access_key={SECRET_ACCESS_KEY}"
    )
}

/// The Python program behind [`put_object`]: boto3 (which moto's venv holds) puts stdin as one
/// object. Arguments: endpoint, region, access key, secret key, bucket, key.
const PUT_OBJECT: &str = r#"import sys, boto3
endpoint, region, key_id, secret, bucket, key = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=key_id,
                  aws_secret_access_key=secret)
s3.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read())
"#;

/// Writes `bytes` as object `key` of the bucket at `location` (one [`fresh_bucket`] returned),
/// with an S3 client of its own (boto3, signed with the location's credentials), behind the back
/// of the client under test: how a test corrupts or plants objects. moto refuses unsigned writes
/// over an object a signed request made. Blocks; panics when the write fails.
pub fn put_object(location: &str, key: &str, bytes: &[u8]) {
    let rest = location.strip_prefix("s3://").unwrap_or_else(|| panic!("{location} is not an s3:// location"));
    let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
    let bucket = bucket.split('/').next().unwrap_or(bucket);
    let param = |name: &str| {
        query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('='))).map(str::to_owned)
    };
    let endpoint = param("endpoint").unwrap_or_else(endpoint);
    let region = param("region").unwrap_or_else(|| REGION.to_owned());
    let key_id = param("access_key_id").unwrap_or_else(|| ACCESS_KEY_ID.to_owned());
    let secret = param("secret_access_key").unwrap_or_else(|| SECRET_ACCESS_KEY.to_owned());
    let python = venv_python();
    let mut child = Command::new(&python)
        .arg("-c")
        .arg(PUT_OBJECT)
        .args([&endpoint, &region, &key_id, &secret, &bucket.to_owned(), &key.to_owned()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    child.stdin.take().expect("piped").write_all(bytes).expect("writing the object to boto3");
    let output = child.wait_with_output().expect("waiting for boto3");
    assert!(
        output.status.success(),
        "putting {key} into {bucket} on {endpoint} with boto3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The venv's python, making the venv first when it is not there (`scripts/s3.sh VENV`).
fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let made = PYTHON.get_or_init(|| {
        let output = Command::new("bash")
            .arg(SCRIPT)
            .arg(VENV)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {SCRIPT}: {e}"))?;
        let moto = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !output.status.success() || moto.is_empty() {
            return Err(format!("`scripts/s3.sh {VENV}` made no venv (see its messages above)"));
        }
        Ok(Path::new(&moto).with_file_name("python"))
    });
    match made {
        Ok(python) => python.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// One unsigned HTTP/1.1 request with an empty body to `endpoint` (`http://HOST:PORT`); returns the
/// response's status line.
fn raw_request(endpoint: &str, method: &str, path: &str) -> io::Result<String> {
    let authority = endpoint
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .ok_or_else(|| io::Error::other(format!("{endpoint} is not an http:// endpoint")))?;
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    Ok(response.lines().next().unwrap_or("(an empty response)").to_owned())
}

/// The server: [`ENDPOINT_VAR`] when set and not empty, else a private one.
fn start() -> Result<Server, Error> {
    if let Some(endpoint) = std::env::var_os(ENDPOINT_VAR).filter(|v| !v.is_empty()) {
        return Ok(Server { endpoint: endpoint.to_string_lossy().trim_end_matches('/').to_owned(), private: None });
    }
    let dir = tempfile::Builder::new().prefix("sandflow-s3-").tempdir().map_err(Error::TempDir)?.keep();
    // The watchdog starts the server, and from then on, whatever happens (a failed start, a panic,
    // a kill), the directory and any server of it go when this process does.
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(SCRIPT)
        .arg(VENV)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            Error::Watchdog(e)
        })?;
    let pipe = watchdog.stdin.take().expect("the watchdog's stdin is piped");
    let mut started = watchdog.stdout.take().expect("the watchdog's stdout is piped");
    // Dropping the handle neither kills nor waits for it: the watchdog outlives this process.
    drop(watchdog);
    let private = PrivateServer { dir, _watchdog: pipe };
    let mut output = String::new();
    started.read_to_string(&mut output).map_err(Error::Read)?;
    let endpoint = output.lines().find(|l| l.starts_with("http://")).ok_or_else(|| Error::Start(output.clone()))?;
    Ok(Server { endpoint: endpoint.to_owned(), private: Some(private) })
}
