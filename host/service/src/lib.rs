//! Sandflow's use cases: what a user can ask of the server, whichever way they ask (the command
//! line on this machine, or the HTTP API). The CLI and the API are thin over this crate: they
//! parse and print; validation, defaults, and the order of writes live here, once.
//!
//! - [`bundles`]: push a bundle (checked whole, stored all or nothing), versions, experiments.
//! - [`plugins`]: upload one plugin, its metadata and which versions pin it.
//! - [`dags`]: DAGs with their schedule and last run, versions, their diff, activation, pause.
//! - [`overview`]: what the UI charts: a DAG's grid of runs × tasks, a run's timeline.
//! - [`runs`]: trigger (a version, an experiment), list page by page, compare runs.
//! - [`actions`]: clear and mark, carried out by the scheduler that owns the store.
//! - [`backfill`]: a run for each past interval of a schedule.
//! - [`auth`]: users, tokens, logins, roles, fuel budgets, the audit log.
//!
//! Errors are [`ServiceError`]s with stable codes; nothing here knows HTTP.

pub mod actions;
pub mod artifacts;
pub mod auth;
pub mod backfill;
pub mod bundles;
pub mod dags;
mod error;
pub mod overview;
pub mod plugins;
pub mod runs;

use sandflow_core::dag::Caps;
use sandflow_sandbox::Sandbox;
use sandflow_store::Store;

pub use error::{Result, ServiceError};

/// What the use cases are set up with.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The server's caps DAGs are checked against.
    pub caps: Caps,
    /// Limits on an uploaded bundle.
    pub bundle_limits: sandflow_bundle::Limits,
    /// Whether a DAG seen for the first time starts paused (its file may say otherwise).
    pub paused_at_creation: bool,
    /// Who carries out an action when no scheduler owns the store, for its lock's record
    /// (`the command line`, `the server`).
    pub role: String,
    /// The least role that may download plugins' bytes over the API (workers read them from
    /// the database, never over HTTP).
    pub plugin_downloads: sandflow_store::Role,
    /// What DAGs may be granted (origins, quotas; mounts and secrets come from the store).
    pub grants: sandflow_scheduler::GrantConfig,
    /// The least role whose uploads may grant secrets to tasks.
    pub secret_granters: sandflow_store::Role,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            caps: Caps::default(),
            bundle_limits: sandflow_bundle::Limits::default(),
            paused_at_creation: false,
            role: "the command line".to_string(),
            plugin_downloads: sandflow_store::Role::Viewer,
            grants: sandflow_scheduler::GrantConfig::default(),
            secret_granters: sandflow_store::Role::Admin,
        }
    }
}

/// The use cases over one store. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    store: Store,
    sandbox: Sandbox,
    config: ServiceConfig,
    specs: std::sync::Arc<dags::SpecCache>,
    logins: std::sync::Arc<auth::LoginThrottle>,
    languages: std::sync::Arc<plugins::LanguageCache>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Service {
    /// The use cases over `store`, checking plugins with `sandbox`.
    pub fn new(store: Store, sandbox: Sandbox, config: ServiceConfig) -> Service {
        Service {
            store,
            sandbox,
            config,
            specs: Default::default(),
            logins: Default::default(),
            languages: Default::default(),
        }
    }

    /// The limits on an uploaded bundle.
    pub fn bundle_limits(&self) -> &sandflow_bundle::Limits {
        &self.config.bundle_limits
    }

    /// The store, for reads the use cases do not wrap.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
