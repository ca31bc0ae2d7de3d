//! The HTTP API, tested over real HTTP on loopback against a real store (a SQLite file, and a
//! PostgreSQL database when one is configured), with a real scheduler and worker in the process
//! where a test runs DAGs. No mocks.

mod artifacts;
mod auth;
mod bad_input;
mod bundles;
mod metrics;
mod openapi;
mod operators;
mod overview;
mod ui_assets;

#[path = "../common/server.rs"]
mod server;

pub use server::*;

/// A DAG file of one or more noop tasks in a chain, with a param that changes its version.
pub fn chain_dag(dag_id: &str, tasks: usize, param: i64) -> String {
    let mut text = format!("id = {dag_id:?}\n");
    for i in 0..tasks {
        text.push_str(&format!("[tasks.t{i}]\nplugin = \"plugins/echo.wasm\"\nparams = {{ n = {param} }}\n"));
        if i > 0 {
            text.push_str(&format!("upstream = [\"t{}\"]\n", i - 1));
        }
    }
    text
}
