//! Pushing a bundle: checked whole, then stored all or nothing.
//!
//! The archive is read with the bundle crate's limits (paths, links, bombs, sizes); every `.wasm`
//! is checked by the sandbox (which compiles it and caches the code, so the first run does not
//! pay for it); every DAG file is validated with its plugin paths resolved inside the bundle and
//! its `sha256:` ids looked up in the bundle and the store. Any problem anywhere refuses the
//! whole bundle with every diagnostic found; nothing is stored. Only then are the plugins stored
//! (by id: bytes already there are not stored twice) and the versions recorded in one
//! transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sandflow_bundle::{code, Bundle, Diagnostic, Ignored};
use sandflow_core::dag::{parse_dag, Dag, PluginRef};
use sandflow_scheduler::StoredSpec;
use sandflow_store::{NewVersion, Placement, VersionOrigin};
use serde::Serialize;

use crate::{Result, Service, ServiceError};

/// How a bundle's versions are placed.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Keep each DAG's active version (`--no-activate`); a new DAG's first version is active all
    /// the same.
    pub no_activate: bool,
    /// Push into this experiment: never scheduled, never active.
    pub experiment: Option<String>,
    /// The experiment's note.
    pub note: Option<String>,
    /// Who pushes.
    pub by: crate::auth::Principal,
    /// Check the bundle and say what a push would store, storing nothing.
    pub dry_run: bool,
}

/// What a push stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PushReport {
    /// Each DAG of the bundle, by file.
    pub dags: Vec<PushedDag>,
    /// Each plugin of the bundle, by path.
    pub plugins: Vec<PushedPlugin>,
    /// Files of the archive that are neither DAG files nor plugins.
    pub ignored: Vec<Ignored>,
    /// Nothing was stored: this is what a push would store.
    pub dry_run: bool,
}

/// A DAG of a pushed bundle.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PushedDag {
    pub dag_id: String,
    /// Its file in the bundle.
    pub file: String,
    pub version: String,
    /// The server had not seen this version of this DAG.
    pub new_version: bool,
    /// The version is now the one the schedule uses (and was not before).
    pub activated: bool,
    /// The DAG is new to the server.
    pub new_dag: bool,
    /// The experiment it joined.
    pub experiment: Option<String>,
    pub tasks: usize,
    /// Every plugin id its tasks pin.
    pub plugin_ids: Vec<String>,
}

/// A plugin of a pushed bundle.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PushedPlugin {
    /// Its path in the bundle.
    pub path: String,
    pub plugin_id: String,
    /// `p1_command` or `p2_command`.
    pub kind: String,
    pub size: usize,
    /// The server did not have these bytes.
    pub new: bool,
}

/// A bundle whose every file checked out, ready to store.
struct Checked {
    bundle: Bundle,
    plugins: Vec<(String, sandflow_sandbox::PluginInfo)>,
    dags: Vec<CheckedDag>,
}

struct CheckedDag {
    file: String,
    dag: Arc<Dag>,
    spec: serde_json::Value,
}

impl Service {
    /// Checks a bundle whole and stores it all or nothing (see the module docs).
    pub async fn push_bundle(&self, bytes: Vec<u8>, options: PushOptions) -> Result<PushReport> {
        if let Some(name) = &options.experiment {
            check_experiment_name(name)?;
        }
        let service = self.clone();
        let handle = tokio::runtime::Handle::current();
        // Unpacking, compiling plugins and parsing are CPU work: off the async threads.
        let checked = tokio::task::spawn_blocking(move || service.check_bundle(&bytes, &handle))
            .await
            .map_err(|e| ServiceError::Internal(format!("checking the bundle failed: {e}")))??;
        self.check_grants(&checked, &options).await?;
        if let Some(name) = &options.experiment {
            let mut missing = Vec::new();
            for dag in &checked.dags {
                if self.store.dag(&dag.dag.id).await?.is_none() {
                    missing.push(
                        Diagnostic::new(
                            code::UNKNOWN_DAG,
                            format!(
                                "DAG `{}` is not on this server, so it cannot have experiments yet: push it once \
                                 without an experiment (it may stay paused), then push experiment `{name}`",
                                dag.dag.id
                            ),
                        )
                        .in_file(dag.file.clone()),
                    );
                }
            }
            if !missing.is_empty() {
                return Err(ServiceError::BundleRejected(missing));
            }
        }
        if options.dry_run {
            return self.preview_bundle(checked, &options).await;
        }
        self.store_bundle(checked, &options).await
    }

    /// Holds every DAG's grants to the server's policy: an upload that asks for more than the
    /// server allows, or grants secrets from a role that may not, is refused whole, naming each
    /// refusal.
    async fn check_grants(&self, checked: &Checked, options: &PushOptions) -> Result<()> {
        let may_grant_secrets = options.by.role >= self.config.secret_granters;
        let policy = self.config.grants.policy(&self.store, may_grant_secrets).await.map_err(ServiceError::Internal)?;
        let mut refused = Vec::new();
        for dag in &checked.dags {
            if let Err(reasons) = policy.check(&dag.dag) {
                refused.extend(
                    reasons.into_iter().map(|r| Diagnostic::new(code::GRANT_REFUSED, r).in_file(dag.file.clone())),
                );
            }
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::BundleRejected(refused))
        }
    }

    /// What storing a checked bundle would do, read from the store without writing to it.
    async fn preview_bundle(&self, checked: Checked, options: &PushOptions) -> Result<PushReport> {
        let Checked { bundle, plugins, dags } = checked;
        let mut pushed_plugins = Vec::new();
        for (path, info) in &plugins {
            pushed_plugins.push(PushedPlugin {
                path: path.clone(),
                plugin_id: info.id.to_string(),
                kind: sandflow_scheduler::stored_kind(info.kind).as_str().to_string(),
                size: bundle.plugins[path].len(),
                new: !self.store.has_plugin(info.id.as_str()).await?,
            });
        }
        let mut pushed_dags = Vec::new();
        for d in &dags {
            let version = d.dag.version();
            let row = self.store.dag(&d.dag.id).await?;
            let new_version = self.store.dag_spec(&d.dag.id, &version).await?.is_none();
            let activated = match (&row, &options.experiment) {
                (None, _) => true,
                (Some(_), Some(_)) => false,
                (Some(row), None) => !options.no_activate && row.active_version != version,
            };
            pushed_dags.push(PushedDag {
                dag_id: d.dag.id.clone(),
                file: d.file.clone(),
                new_version,
                activated,
                new_dag: row.is_none(),
                experiment: options.experiment.clone(),
                tasks: d.dag.tasks.len(),
                plugin_ids: sandflow_scheduler::plugin_ids(&d.dag),
                version,
            });
        }
        Ok(PushReport { dags: pushed_dags, plugins: pushed_plugins, ignored: bundle.ignored, dry_run: true })
    }

    fn check_bundle(&self, bytes: &[u8], handle: &tokio::runtime::Handle) -> Result<Checked> {
        let bundle = Bundle::read(bytes, &self.config.bundle_limits)
            .map_err(|diagnostics| ServiceError::BundleRejected(diagnostics.into_vec()))?;
        let mut diagnostics = Vec::new();
        let mut plugins = Vec::new();
        let mut by_path: HashMap<&str, Result<String, String>> = HashMap::new();
        for (path, bytes) in &bundle.plugins {
            match self.sandbox.check(bytes) {
                Ok(info) => {
                    by_path.insert(path, Ok(info.id.to_string()));
                    plugins.push((path.clone(), info));
                }
                Err(e) => {
                    diagnostics.push(Diagnostic::new(code::INVALID_PLUGIN, e.to_string()).in_file(path.clone()));
                    by_path.insert(path, Err(format!("{path} is not a plugin this server can run: {e}")));
                }
            }
        }
        let in_bundle: std::collections::HashSet<String> = plugins.iter().map(|(_, i)| i.id.to_string()).collect();
        let mut dags = Vec::new();
        let mut ids: BTreeMap<String, String> = BTreeMap::new();
        for (file, text) in &bundle.dags {
            if text.len() as u64 > sandflow_scheduler::MAX_DAG_FILE_BYTES {
                let message = format!(
                    "{} bytes: the limit for one DAG file is {}",
                    text.len(),
                    sandflow_scheduler::MAX_DAG_FILE_BYTES
                );
                diagnostics.push(Diagnostic::new(code::DAG_FILE_TOO_LARGE, message).in_file(file.clone()));
                continue;
            }
            let mut pinned = BTreeMap::new();
            let mut resolve = |plugin: &PluginRef| match plugin {
                PluginRef::Path(path) => {
                    let Some((full, _)) = bundle.plugin(file, path) else {
                        return Err(format!("no plugin {path:?} in the bundle (paths are relative to the DAG file)"));
                    };
                    let id = by_path.get(full).cloned().unwrap_or_else(|| Err(format!("no plugin {full}")))?;
                    pinned.insert(path.clone(), id.clone());
                    Ok(id)
                }
                PluginRef::Id(id) if in_bundle.contains(id) => Ok(id.clone()),
                PluginRef::Id(id) => match handle.block_on(self.store.has_plugin(id)) {
                    Ok(true) => Ok(id.clone()),
                    Ok(false) => Err(format!("no plugin {id} on the server or in the bundle: upload it first")),
                    Err(e) => Err(format!("looking up {id}: {e}")),
                },
            };
            match parse_dag(file, text, &self.config.caps, &mut resolve) {
                Err(found) => diagnostics.extend(found.into_iter().map(dag_diagnostic)),
                Ok(dag) => {
                    if let Some(other) = ids.insert(dag.id.clone(), file.clone()) {
                        let message = format!("DAG id `{}` is also declared by {other}", dag.id);
                        diagnostics.push(Diagnostic::new(code::DUPLICATE_DAG_ID, message).in_file(file.clone()));
                        continue;
                    }
                    let spec = StoredSpec { file: file.clone(), source: text.clone(), plugins: pinned };
                    let spec = serde_json::to_value(&spec).map_err(|e| ServiceError::Internal(e.to_string()))?;
                    dags.push(CheckedDag { file: file.clone(), dag: Arc::new(dag), spec });
                }
            }
        }
        if !diagnostics.is_empty() {
            return Err(ServiceError::BundleRejected(diagnostics));
        }
        Ok(Checked { bundle, plugins, dags })
    }

    async fn store_bundle(&self, checked: Checked, options: &PushOptions) -> Result<PushReport> {
        let Checked { bundle, plugins, dags } = checked;
        let mut pushed_plugins = Vec::new();
        for (path, info) in &plugins {
            let bytes = &bundle.plugins[path];
            let kind = sandflow_scheduler::stored_kind(info.kind);
            let new = self.store.put_plugin(info.id.as_str(), bytes, kind).await?;
            pushed_plugins.push(PushedPlugin {
                path: path.clone(),
                plugin_id: info.id.to_string(),
                kind: kind.as_str().to_string(),
                size: bytes.len(),
                new,
            });
        }
        let placement = match &options.experiment {
            Some(name) => Placement::Experiment { name, note: options.note.as_deref() },
            None if options.no_activate => Placement::Keep,
            None => Placement::Activate,
        };
        let prepared: Vec<(String, String, Vec<String>)> = dags
            .iter()
            .map(|d| (d.dag.version(), format!("bundle:{}", d.file), sandflow_scheduler::plugin_ids(&d.dag)))
            .collect();
        let versions: Vec<NewVersion<'_>> = dags
            .iter()
            .zip(&prepared)
            .map(|(d, (version, file_path, plugin_ids))| NewVersion {
                dag_id: &d.dag.id,
                version,
                spec: &d.spec,
                file_path,
                plugin_ids,
                paused_if_new: d.dag.paused.unwrap_or(self.config.paused_at_creation),
                origin: VersionOrigin::Bundle,
                uploaded_by: Some(&options.by.name),
                placement,
            })
            .collect();
        let detail = serde_json::json!({
            "dags": versions.iter().map(|v| serde_json::json!({"dag_id": v.dag_id, "version": v.version})).collect::<Vec<_>>(),
            "experiment": options.experiment,
            "plugins": pushed_plugins.iter().map(|p| p.plugin_id.as_str()).collect::<Vec<_>>(),
        });
        let audit = options.by.audit("bundle.push", &options.experiment.clone().unwrap_or_else(|| "-".into()), detail);
        let recorded = self.store.audited(&audit).record_versions(&versions).await?;
        let pushed_dags = dags
            .iter()
            .zip(prepared)
            .zip(recorded)
            .map(|((d, (version, _, plugin_ids)), r)| PushedDag {
                dag_id: d.dag.id.clone(),
                file: d.file.clone(),
                version,
                new_version: r.new_version,
                activated: r.activated,
                new_dag: r.new_dag,
                experiment: options.experiment.clone(),
                tasks: d.dag.tasks.len(),
                plugin_ids,
            })
            .collect();
        self.store.notify(sandflow_store::Topic::Queued).await.ok();
        Ok(PushReport { dags: pushed_dags, plugins: pushed_plugins, ignored: bundle.ignored, dry_run: false })
    }
}

/// Core's DAG diagnostic as a bundle diagnostic (the same fields, with a code).
fn dag_diagnostic(d: sandflow_core::dag::Diagnostic) -> Diagnostic {
    let position = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let diagnostic =
        Diagnostic::new(code::INVALID_DAG, d.message).in_file(d.file).at(position(d.line), position(d.column));
    if d.field.is_empty() {
        diagnostic
    } else {
        diagnostic.with_field(d.field)
    }
}

/// An experiment's name: 1 to 100 characters of letters, digits, `.`, `_`, `-`, `@`, `+`, `/`.
pub fn check_experiment_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-@+/".contains(c);
    if name.is_empty() || name.len() > 100 || !name.chars().all(allowed) {
        return Err(ServiceError::Invalid(format!(
            "experiment name {:?} is not valid: 1 to 100 characters of letters, digits and . _ - @ + /",
            sandflow_core::text::shorten(name, 60)
        )));
    }
    Ok(())
}
