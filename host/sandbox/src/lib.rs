//! The sandbox: runs one Sandflow task try as a WASI plugin, and nothing else.
//!
//! Why it is shaped this way:
//! - **It knows nothing of DAGs or storage.** Bytes and a context go in, a [`TryReport`] comes out.
//!   The scheduler decides what a failure means; the store (the database) keeps the bytes by id.
//! - **Only this crate touches wasmtime.** wasmtime's API moves between majors; keeping it behind
//!   [`Sandbox`], [`Plugin`] and [`Outcome`] keeps an upgrade to one crate.
//! - **One engine and two linkers per process; a fresh store per try.** Compilation and linking are
//!   paid once per plugin (and cached on disk, keyed by the plugin's `sha256:` id and the engine's
//!   fingerprint); a try pays only for a store, a WASI context and an instantiation from the pool.
//! - **Every way a try can end is a variant of [`Outcome`]**, recovered by downcasting wasmtime's
//!   errors, never by matching strings, so the scheduler and the UI can tell a fuel limit from a trap.
//! - **Async all the way.** Tries run as futures on tokio; an epoch ticker makes running wasm yield
//!   every few milliseconds, so thousands of waiting tries block no thread, and a kill or a deadline
//!   stops a try within a tick by dropping its future.
//!
//! Isolation: no arguments, no sockets or name lookup, and no host stdio: stdin is the context,
//! stdout and stderr are capped in-memory pipes. Beyond that a try gets only what its [`TryGrants`]
//! give: a writable `/out` under a size quota, read-only directories (`/in`, `/data/<mount>`),
//! environment variables, and HTTP egress through wasi:http (components only) to listed origins,
//! never to a private address the server has not allowed, within request, byte and time limits,
//! recorded or replayed on request. Its random sources and clocks are a function of its
//! [`Determinism`] (a seed and a virtual clock), so a replay gives the same bytes.
#![deny(missing_docs)]

mod clocks;
mod egress;
mod engine;
mod error;
mod grants;
mod languages;
mod limits;
mod operator;
mod outcome;
mod pipes;
mod plugin;

pub use egress::{HttpExchange, HttpGrant, HttpReport};
pub use engine::{CodeSource, KillSwitch, LiveLog, Plugin, Sandbox, SandboxConfig};
pub use error::{PluginError, SandboxError};
pub use grants::{Determinism, OutDir, ReadOnlyDir, TryGrants, CLOCK_STEP, OUT_ENTRY_BYTES, OUT_WATCH_INTERVAL};
pub use languages::languages;
pub use limits::{Caps, Limits, MAX_PLUGIN_BYTES};
pub use operator::{Progress, OPERATOR_WORLD};
pub use outcome::{human_bytes, human_duration, Outcome, TryReport};
pub use plugin::{PluginId, PluginInfo, PluginKind};
