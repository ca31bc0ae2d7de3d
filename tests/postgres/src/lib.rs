//! A real PostgreSQL server for the tests, and a fresh empty database on it for every test that
//! asks: [`fresh_database`] returns the URL of a database no other test has seen.
//!
//! **Which server.** When `SANDFLOW_TEST_POSTGRES_URL` ([`ADMIN_URL_VAR`]) is set, it is the admin URL
//! of a server someone else runs: `scripts/test.sh` (and so CI) starts one private cluster for the
//! whole run and sets it, so the many test processes of one run share one server and nobody waits for
//! one `initdb` per process. When it is not set (a developer's `cargo test`), the first call in a test
//! process starts a private cluster for that process, on a free loopback port, in a temporary
//! directory, and every later call in the process uses it. There is no third option: a machine
//! without PostgreSQL makes these tests panic, naming Debian's `postgresql` package, rather than skip.
//!
//! **One script starts clusters.** The private cluster is started by `scripts/postgres.sh start DIR`,
//! the same script `scripts/test.sh` uses, so finding the binaries (on `PATH`, else the newest
//! `/usr/lib/postgresql/*/bin`), running them as the `postgres` user when the tests run as root
//! (PostgreSQL refuses root), trust authentication, the socket in DIR and the choice of a free port
//! live in one place. `pg_ctl start -w` returns once the server accepts connections.
//!
//! **Stopping it when the process exits.** The Rust test harness has no global teardown, and a test
//! process may end by `exit`, by a panic, by Ctrl-C or by `kill -9`. So the cluster is not stopped by
//! the test process at all: the process spawns a watchdog (`sh`) whose standard input is a pipe
//! that only this process holds open (std opens pipes close-on-exec, so no other child inherits
//! it). The watchdog runs `scripts/postgres.sh start DIR`, hands the URL back on its stdout, then
//! blocks reading that pipe; however the process ends, the kernel closes its end, the watchdog
//! reads end-of-file and runs `scripts/postgres.sh stop DIR` (stop the server, remove DIR). Since
//! one process runs both, a test process killed while its cluster starts cannot have the stop
//! overtake the start. The watchdog ignores SIGINT, SIGHUP and SIGTERM, so the Ctrl-C that kills the
//! test process's group does not kill it first, and `pg_ctl` puts the postmaster in a session of its
//! own, so Ctrl-C does not kill the server before it is stopped cleanly either. The watchdog keeps
//! the test process's standard error open until it is done: a parent that reads a test process's
//! stderr to its end knows that the private cluster is stopped and its directory removed (this
//! crate's own tests rely on that; nothing is timed).
//!
//! **Databases.** Each [`fresh_database`] is a `CREATE DATABASE` on the server, named after the
//! process id, the time and a counter, so processes sharing one server never collide. Databases are
//! not dropped: the test harness has no teardown, and the whole cluster is thrown away at the end of
//! the run (or of the process). Databases are created over a connection of their own, not a pool: a
//! pool belongs to the tokio runtime that made it, and every `#[tokio::test]` has its own runtime.
//!
//! **Handing a database to another process.** A multi-process test gives each child the URL of its
//! database in `SANDFLOW_DATABASE_URL` ([`DATABASE_URL_VAR`]); a child that is itself a test process
//! and wants databases of its own is given [`ADMIN_URL_VAR`] = [`admin_url`], so it shares this
//! process's server instead of starting another.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

/// The admin URL of a PostgreSQL server to use instead of a private cluster (set by
/// `scripts/test.sh`). Its user must be allowed to create databases.
pub const ADMIN_URL_VAR: &str = "SANDFLOW_TEST_POSTGRES_URL";

/// The variable through which Sandflow's processes take their database URL: what a multi-process
/// test sets for each child it spawns.
pub const DATABASE_URL_VAR: &str = "SANDFLOW_DATABASE_URL";

/// The script that starts and stops private clusters, from this crate's place in the source tree.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres.sh");

/// The watchdog's program, run by `sh -c WATCHDOG SCRIPT DIR`: start the cluster in DIR (its URL, or
/// why it did not start, on stdout, which is then closed), block until this process's end of the
/// pipe on its stdin closes, then stop the cluster and remove DIR. The watchdog runs the start
/// itself so that a process killed while its cluster starts cannot have the stop run before the
/// start is done. Signals that a terminal or a test runner sends to the whole process group are
/// ignored (and stay ignored in the programs it runs), so the cleanup outlives the process it
/// cleans up after.
const WATCHDOG: &str = r#"trap '' INT HUP TERM
bash "$0" start "$1" 2>&1
exec >/dev/null
cat
exec bash "$0" stop "$1""#;

/// The server the tests of this process use.
pub struct Server {
    admin_url: String,
    private: Option<PrivateCluster>,
}

/// A cluster this process started: its directory, and the write end of the watchdog's pipe, held
/// (never written) for the life of the process.
struct PrivateCluster {
    dir: PathBuf,
    _watchdog: ChildStdin,
}

impl Server {
    /// The URL of the server's admin database, as a user that may create databases.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The directory of the private cluster this process started, or `None` when the server is the
    /// one [`ADMIN_URL_VAR`] names. It holds the cluster's data, socket and logs, and is removed when
    /// the process ends.
    pub fn private_dir(&self) -> Option<&Path> {
        self.private.as_ref().map(|p| p.dir.as_path())
    }
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("creating a temporary directory for a private PostgreSQL cluster: {0}")]
    TempDir(#[source] io::Error),
    #[error("spawning the watchdog that starts and stops the private PostgreSQL cluster (sh): {0}")]
    Watchdog(#[source] io::Error),
    #[error("reading the private PostgreSQL cluster's start: {0}")]
    Read(#[source] io::Error),
    #[error("no private PostgreSQL cluster for the tests: `scripts/postgres.sh start` printed no URL:\n{0}")]
    Start(String),
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// The server of this process's tests: the one [`ADMIN_URL_VAR`] names, or a private cluster started
/// on the first call (see the crate's documentation). Panics when there is none: PostgreSQL is not
/// installed, or the cluster did not start (the message says which, with the server's log).
pub async fn server() -> &'static Server {
    let server = match SERVER.get() {
        Some(server) => server,
        // Starting a cluster blocks for a second or two; other tests wait on the OnceLock meanwhile.
        None => tokio::task::spawn_blocking(|| SERVER.get_or_init(|| start().map_err(|e| e.to_string())))
            .await
            .expect("starting the PostgreSQL server for the tests"),
    };
    match server {
        Ok(server) => server,
        Err(error) => panic!("{error}"),
    }
}

/// The admin URL of the tests' server ([`server`]), for tests that create or drop databases or
/// roles themselves, and for child test processes (as [`ADMIN_URL_VAR`]).
pub async fn admin_url() -> String {
    server().await.admin_url.clone()
}

/// The URL of a new, empty database on the tests' server, named so that no other call, in this
/// process or another, gets the same one. Panics when the server is unreachable.
pub async fn fresh_database() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let admin = admin_url().await;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // Lower-case letters, digits and underscores only: a valid identifier as it is (PostgreSQL's
    // limit is 63 bytes; this is under 50).
    let name = format!("sandflow_test_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connecting to the tests' PostgreSQL server {}: {e}", redacted(&admin)));
    // A database name cannot be a bound parameter; `name` is made above from digits and ASCII.
    sqlx::raw_sql(&format!(r#"CREATE DATABASE "{name}""#))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating database {name} on {}: {e}", redacted(&admin)));
    // The database exists whether or not the goodbye reaches the server.
    let _ = conn.close().await;
    with_database(&admin, &name)
}

/// `url` with its database (the URL's path) replaced by `name`, its user, host and parameters kept:
/// how a test names another database on the same server.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// `url` with its password, if any, replaced by `***`, for messages.
fn redacted(url: &str) -> String {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let Some(at) = url[authority..].find('@').map(|i| authority + i) else { return url.to_owned() };
    match url[authority..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..authority + colon], &url[at..]),
        None => url.to_owned(),
    }
}

/// The server: [`ADMIN_URL_VAR`] when set and not empty, else a private cluster.
fn start() -> Result<Server, Error> {
    if let Some(url) = std::env::var_os(ADMIN_URL_VAR).filter(|v| !v.is_empty()) {
        return Ok(Server { admin_url: url.to_string_lossy().into_owned(), private: None });
    }
    let dir = tempfile::Builder::new().prefix("sandflow-pg-").tempdir().map_err(Error::TempDir)?.keep();
    // The watchdog starts the cluster, and from then on, whatever happens (a failed start, a
    // panic, a kill), the directory and any server in it go when this process does.
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(SCRIPT)
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
    let private = PrivateCluster { dir, _watchdog: pipe };
    let mut output = String::new();
    started.read_to_string(&mut output).map_err(Error::Read)?;
    let admin_url =
        output.lines().find(|l| l.starts_with("postgres://")).ok_or_else(|| Error::Start(output.clone()))?;
    Ok(Server { admin_url: admin_url.to_owned(), private: Some(private) })
}
