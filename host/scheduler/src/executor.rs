//! The executor a worker runs tries with: fetches a plugin by id (store → sandbox, verified by
//! hash, compiled once per process), runs one try.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandflow_sandbox::{KillSwitch, Limits, LiveLog, Outcome, Plugin, PluginId, Sandbox, TryGrants, TryReport};
use sandflow_store::Store;

/// One try to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// The plugin's `sha256:` id.
    pub plugin_id: String,
    /// The task context, as JSON bytes.
    pub context: Vec<u8>,
    /// The try's limits.
    pub limits: Limits,
    /// Stops the try from outside.
    pub kill: KillSwitch,
    /// Its log while it runs.
    pub live: LiveLog,
    /// What it may touch: directories, environment, HTTP, its seed and clock.
    pub grants: TryGrants,
}

/// Runs tries in the sandbox, fetching plugin bytes from the store by id.
pub struct Executor {
    store: Store,
    sandbox: Sandbox,
    plugins: Mutex<HashMap<String, Arc<Plugin>>>,
    /// Held while a plugin is fetched and compiled: the tries of a new plugin that start at once
    /// wait for one compile instead of each doing their own.
    loading: tokio::sync::Mutex<()>,
}

impl Executor {
    /// An executor over `store`'s plugins.
    pub fn new(store: Store, sandbox: Sandbox) -> Self {
        Executor { store, sandbox, plugins: Mutex::new(HashMap::new()), loading: tokio::sync::Mutex::new(()) }
    }

    /// Runs one try; never fails (a plugin that cannot be fetched is a host error outcome).
    pub async fn run(&self, job: &Job) -> TryReport {
        // A try killed while its plugin is fetched or compiled ends at once, not after the compile.
        let plugin = tokio::select! {
            biased;
            () = job.kill.killed() => return self.killed(&job.plugin_id),
            plugin = self.plugin(&job.plugin_id) => plugin,
        };
        match plugin {
            Ok(plugin) => {
                self.sandbox.run_granted(&plugin, &job.context, &job.limits, &job.grants, &job.kill, &job.live).await
            }
            Err(message) => self.host_error(&job.plugin_id, message),
        }
    }

    /// The report of a try killed before it started.
    fn killed(&self, plugin_id: &str) -> TryReport {
        TryReport { outcome: Outcome::Killed, ..self.host_error(plugin_id, String::new()) }
    }

    /// The report of a try that could not start.
    pub fn host_error(&self, plugin_id: &str, message: String) -> TryReport {
        TryReport {
            plugin: plugin_id.parse().unwrap_or_else(|_| PluginId::of(plugin_id.as_bytes())),
            outcome: Outcome::HostError { message },
            log: String::new(),
            fuel_used: 0,
            peak_memory_bytes: 0,
            wall_time: Duration::ZERO,
            progress: None,
            determinism: Default::default(),
            http: None,
            out_bytes: 0,
        }
    }

    fn cached(&self, id: &str) -> Option<Arc<Plugin>> {
        self.plugins.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    async fn plugin(&self, id: &str) -> Result<Arc<Plugin>, String> {
        if let Some(plugin) = self.cached(id) {
            return Ok(plugin);
        }
        let _loading = self.loading.lock().await;
        if let Some(plugin) = self.cached(id) {
            return Ok(plugin);
        }
        // The store checks the bytes against their id.
        let bytes = self
            .store
            .plugin_bytes(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("plugin {id} is not in the store"))?;
        let sandbox = self.sandbox.clone();
        let plugin = tokio::task::spawn_blocking(move || sandbox.load(&bytes))
            .await
            .map_err(|e| format!("loading plugin {id}: {e}"))?
            .map_err(|e| format!("plugin {id}: {e}"))?;
        self.plugins.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), plugin.clone());
        Ok(plugin)
    }
}
