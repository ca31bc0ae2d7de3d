//! Sandflow's pure core: DAG specs and their validation ([`dag`]), and the task state machine
//! ([`state`]). No tokio, no sqlx, no wasmtime: everything here is a function tests can walk.

pub mod dag;
pub mod state;
pub mod text;
