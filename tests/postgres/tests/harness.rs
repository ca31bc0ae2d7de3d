//! The harness tested as its callers use it: fresh databases on whatever server this suite has, and
//! the private-cluster path in a child process of its own (the probe binary, run with
//! `SANDFLOW_TEST_POSTGRES_URL` removed), so that this file runs the same whether the variable is
//! set (`scripts/test.sh`) or not (`cargo test`).

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use sandflow_test_postgres::{admin_url, fresh_database, server, with_database, ADMIN_URL_VAR};
use sqlx::{Connection, PgConnection};

const PROBE: &str = env!("CARGO_BIN_EXE_sandflow-test-postgres-probe");

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// Tables (and views) a user could have made: none in a fresh database.
async fn user_tables(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%'",
    )
    .fetch_one(conn)
    .await
    .expect("counting tables")
}

#[tokio::test]
async fn two_fresh_databases_are_distinct_and_empty_and_take_a_table() {
    let a = fresh_database().await;
    let b = fresh_database().await;
    assert_ne!(a, b);
    let mut ca = connect(&a).await;
    let mut cb = connect(&b).await;
    let name_a: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut ca).await.unwrap();
    let name_b: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut cb).await.unwrap();
    assert_ne!(name_a, name_b);
    assert_eq!(user_tables(&mut ca).await, 0, "{a} is not empty");
    assert_eq!(user_tables(&mut cb).await, 0, "{b} is not empty");

    sqlx::raw_sql("CREATE TABLE t (x integer); INSERT INTO t VALUES (1)").execute(&mut ca).await.unwrap();
    assert_eq!(user_tables(&mut ca).await, 1);
    assert_eq!(user_tables(&mut cb).await, 0, "a table made in {a} is seen in {b}");
    // The same name again: it can only succeed in a database of its own.
    sqlx::raw_sql("CREATE TABLE t (x integer)").execute(&mut cb).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t").fetch_one(&mut cb).await.unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn the_server_is_the_configured_one_or_a_private_cluster_and_may_create_databases() {
    let server = server().await;
    match std::env::var(ADMIN_URL_VAR) {
        Ok(url) if !url.is_empty() => {
            assert_eq!(server.admin_url(), url);
            assert_eq!(server.private_dir(), None);
        }
        _ => {
            let dir = server.private_dir().expect("no variable, so a private cluster");
            assert!(dir.join("data/PG_VERSION").exists(), "{} holds no cluster", dir.display());
        }
    }
    let mut conn = connect(&admin_url().await).await;
    let may_create: bool =
        sqlx::query_scalar("SELECT rolsuper OR rolcreatedb FROM pg_catalog.pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(may_create, "the admin URL's user may not create databases");
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(with_database("postgres://u@h:5/postgres", "x"), "postgres://u@h:5/x");
    assert_eq!(
        with_database("postgres://u:p@h:5/postgres?sslmode=disable", "x"),
        "postgres://u:p@h:5/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    assert_eq!(with_database("postgres://h?application_name=t", "x"), "postgres://h/x?application_name=t");
}

/// What the probe printed, read up to its `ready` line.
struct Probe {
    dir: PathBuf,
    admin: String,
    database: String,
}

impl Probe {
    fn port(&self) -> u16 {
        let authority = self.admin.trim_start_matches("postgres://").split('/').next().unwrap();
        authority.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("no port in {}", self.admin))
    }
}

/// Runs the probe without [`ADMIN_URL_VAR`], reads what it prints up to `ready`, and returns it with
/// the child (still running when `hold`) and a thread collecting the probe's stderr: that ends only
/// when every holder of the pipe has closed it, the cluster's watchdog included.
fn spawn_probe(hold: bool) -> (Probe, Child, std::thread::JoinHandle<String>) {
    let mut command = Command::new(PROBE);
    command.env_remove(ADMIN_URL_VAR).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if hold {
        command.arg("--hold");
    }
    let mut child = command.spawn().expect("spawning the probe");
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).expect("reading the probe's stderr");
        text
    });
    let (mut dir, mut admin, mut database) = (None, None, None);
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("reading the probe's stdout");
        match line.split_once(' ') {
            Some(("dir", v)) => dir = Some(PathBuf::from(v)),
            Some(("admin", v)) => admin = Some(v.to_owned()),
            Some(("database", v)) => database = Some(v.to_owned()),
            _ if line == "ready" => break,
            _ => panic!("the probe printed {line:?}"),
        }
    }
    let Some(((dir, admin), database)) = dir.zip(admin).zip(database) else {
        let status = child.wait().unwrap();
        panic!("the probe ended ({status}) before it was ready:\n{}", stderr.join().unwrap());
    };
    (Probe { dir, admin, database }, child, stderr)
}

/// After the probe is gone and its stderr closed: the cluster's directory is removed and nothing
/// listens on its port.
fn assert_cluster_gone(probe: &Probe, stderr: &str) {
    assert!(!probe.dir.exists(), "{} is still there after its process ended; stderr:\n{stderr}", probe.dir.display());
    let refused = TcpStream::connect(("127.0.0.1", probe.port()));
    assert!(
        refused.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "port {} after its process ended: {refused:?}; stderr:\n{stderr}",
        probe.port()
    );
}

#[test]
fn without_the_variable_a_private_cluster_runs_and_is_removed_when_its_process_exits() {
    let (probe, mut child, stderr) = spawn_probe(false);
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "the probe failed ({status}):\n{stderr}");
    assert!(probe.dir.is_absolute(), "the probe used no private cluster (dir {})", probe.dir.display());
    assert!(probe.database.starts_with(&with_database(&probe.admin, "sandflow_test_")), "{}", probe.database);
    if let Ok(shared) = std::env::var(ADMIN_URL_VAR) {
        assert_ne!(probe.admin, shared, "the probe used the shared server");
    }
    assert_cluster_gone(&probe, &stderr);
}

#[test]
fn a_private_cluster_is_removed_when_its_process_is_killed() {
    let (probe, mut child, stderr) = spawn_probe(true);
    // While the process lives, so does its cluster.
    assert!(probe.dir.join("data/PG_VERSION").exists(), "{} holds no cluster", probe.dir.display());
    TcpStream::connect(("127.0.0.1", probe.port()))
        .expect("the private cluster accepts connections while its process lives");

    child.kill().expect("killing the probe (SIGKILL)");
    let status = child.wait().unwrap();
    assert!(!status.success());
    let stderr = stderr.join().unwrap();
    assert_cluster_gone(&probe, &stderr);
}
