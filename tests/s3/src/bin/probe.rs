//! A test process for the harness's own tests (`tests/harness.rs`), which run it with
//! `SANDFLOW_TEST_S3_ENDPOINT` removed so that it starts a private moto server, whatever the suite
//! around it uses.
//!
//! It takes a fresh bucket and prints what the parent checks afterwards, one `key value` per line:
//! `dir` (the private server's directory, or `none`), `endpoint`, `bucket` (the fresh bucket's
//! location), then `ready`; then it exits.

use std::io::Write;

fn main() {
    let server = sandflow_test_s3::server();
    let bucket = sandflow_test_s3::fresh_bucket();
    let dir = server.private_dir().map_or("none".to_owned(), |d| d.display().to_string());
    let mut out = std::io::stdout().lock();
    writeln!(out, "dir {dir}\nendpoint {}\nbucket {bucket}\nready", server.endpoint()).expect("writing stdout");
    out.flush().expect("flushing stdout");
}
