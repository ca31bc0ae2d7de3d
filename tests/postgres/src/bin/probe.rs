//! A test process for the harness's own tests (`tests/harness.rs`), which run it with
//! `SANDFLOW_TEST_POSTGRES_URL` removed so that it starts a private cluster, whatever the suite
//! around it uses.
//!
//! It takes a fresh database, creates a table in it, and prints what the parent checks afterwards,
//! one `key value` per line: `dir` (the private cluster's directory, or `none`), `admin` (the admin
//! URL), `database` (the fresh database's URL), then `ready`. With `--hold` it then waits until it
//! is killed; without, it exits.

use sqlx::{Connection, PgConnection};
use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let hold = std::env::args().skip(1).any(|a| a == "--hold");
    let server = sandflow_test_postgres::server().await;
    let database = sandflow_test_postgres::fresh_database().await;
    let mut conn = PgConnection::connect(&database).await.expect("connecting to the fresh database");
    sqlx::raw_sql("CREATE TABLE probe (x integer)").execute(&mut conn).await.expect("creating a table");
    conn.close().await.expect("closing the connection");

    let dir = server.private_dir().map_or("none".to_owned(), |d| d.display().to_string());
    let mut out = std::io::stdout().lock();
    writeln!(out, "dir {dir}\nadmin {}\ndatabase {database}\nready", server.admin_url()).expect("writing stdout");
    out.flush().expect("flushing stdout");
    drop(out);
    if hold {
        loop {
            std::thread::park();
        }
    }
}
