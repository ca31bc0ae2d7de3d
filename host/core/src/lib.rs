//! Sandflow's pure core: DAG specs and their validation ([`dag`]), the states and trigger rules
//! ([`state`]), and the task state machine with the judge of tries beside it ([`transition`]).
//! No tokio, no sqlx, no wasmtime: everything here is a function tests can walk.

pub mod dag;
pub mod secrets;
pub mod state;
pub mod text;
pub mod transition;
