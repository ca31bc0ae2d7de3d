//! Grants on the worker's side: the server's grant settings, what a queued job grants its try
//! ([`JobGrants`]), and the try's surroundings ([`TryEnv`]): its `/out` and `/in` directories, its
//! mounts, its secrets (opened here and redacted from all it leaves), the artifacts it leaves, and
//! the record of what it was given.
//!
//! The sandbox knows nothing of this: it gets host directories, environment pairs and an HTTP
//! grant ([`TryGrants`]). The store knows nothing of blobs: artifacts are rows naming hashes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sandflow_blobs::Blobs;
use sandflow_core::dag::{GrantPolicy, Grants, Task};
use sandflow_core::secrets::{Redactor, SecretKey};
use sandflow_sandbox::{Determinism, HttpGrant, Limits, OutDir, ReadOnlyDir, TryGrants, TryReport};
use sandflow_store::{NewArtifact, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;

/// The server's settings for grants: what DAGs may ask for (checked at load and upload), and what
/// workers need to give it (a scratch directory, the blob store, the secrets' key, HTTP limits).
#[derive(Debug, Clone)]
pub struct GrantConfig {
    /// Origins DAGs may list in `allow_http` (`--allow-http`); `*` for any. Empty: no egress.
    pub allow_http: Vec<String>,
    /// Origins that may resolve to private, loopback or link-local addresses
    /// (`--allow-private-http`); requests to others that do are refused (SSRF).
    pub private_http: Vec<String>,
    /// The `/out` quota of a task that sets none, in MiB.
    pub default_out_quota_mb: u64,
    /// The largest `out_quota_mb` a DAG may ask for.
    pub max_out_quota_mb: u64,
    /// Per try: HTTP requests, body bytes, and the time one request may take.
    pub http_max_requests: u32,
    /// See [`GrantConfig::http_max_requests`].
    pub http_max_bytes: u64,
    /// See [`GrantConfig::http_max_requests`].
    pub http_request_timeout: Duration,
    /// Where workers make each try's `/out` and `/in` (removed when the try ends).
    pub work_dir: PathBuf,
    /// The blob store of artifacts: a folder, or `s3://bucket/...` (see `sandflow_blobs::Blobs::open`).
    pub blobs: String,
    /// The key secrets are sealed with; `None`: tasks that are granted secrets fail to start.
    pub secret_key: Option<SecretKey>,
}

impl GrantConfig {
    /// The settings of a home: tries in `<home>/work`, artifacts in `<home>/artifacts`.
    pub fn in_home(home: &Path) -> GrantConfig {
        GrantConfig {
            work_dir: home.join("work"),
            blobs: home.join("artifacts").display().to_string(),
            ..GrantConfig::default()
        }
    }

    /// The policy DAGs are checked against, with the mounts and secrets the store holds now.
    /// `may_grant_secrets`: whether whoever submits the DAG may grant secrets.
    pub async fn policy(&self, store: &Store, may_grant_secrets: bool) -> Result<GrantPolicy, String> {
        let mounts = store.mounts().await.map_err(|e| e.to_string())?;
        let secrets = store.secrets().await.map_err(|e| e.to_string())?;
        Ok(GrantPolicy {
            allow_http: self.allow_http.clone(),
            max_out_quota_mb: self.max_out_quota_mb,
            mounts: mounts.into_iter().map(|m| m.name).collect(),
            secrets: secrets.into_iter().map(|s| s.name).collect(),
            may_grant_secrets,
        })
    }

    /// What a queued try of `task` is granted.
    pub fn job_grants(&self, task: &Task) -> JobGrants {
        let g: &Grants = &task.grants;
        JobGrants {
            out_quota_bytes: g.out_quota_mb.unwrap_or(self.default_out_quota_mb).saturating_mul(MIB),
            upstream: task.upstream.clone(),
            mounts: g.mounts.clone(),
            secrets: g.secrets.clone(),
            allow_http: g.allow_http.clone(),
            record_http: g.record_http,
        }
    }
}

impl Default for GrantConfig {
    fn default() -> Self {
        let scratch = std::env::temp_dir().join(format!("sandflow-{}", std::process::id()));
        GrantConfig {
            allow_http: Vec::new(),
            private_http: Vec::new(),
            default_out_quota_mb: Grants::DEFAULT_OUT_QUOTA_MB,
            max_out_quota_mb: GrantPolicy::DEFAULT_MAX_OUT_QUOTA_MB,
            http_max_requests: 100,
            http_max_bytes: 64 * MIB,
            http_request_timeout: Duration::from_secs(30),
            work_dir: scratch.join("work"),
            blobs: scratch.join("artifacts").display().to_string(),
            secret_key: None,
        }
    }
}

/// What a queued job grants its try (in the job's JSON, beside its context and limits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobGrants {
    /// The `/out` quota in bytes.
    pub out_quota_bytes: u64,
    /// The direct upstream tasks whose artifacts the try sees at `/in/<task>/`.
    #[serde(default)]
    pub upstream: Vec<String>,
    /// Mounts, at `/data/<name>`.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Secrets, as environment variables.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// HTTP origins.
    #[serde(default)]
    pub allow_http: Vec<String>,
    /// Whether HTTP exchanges are recorded.
    #[serde(default)]
    pub record_http: bool,
}

impl Default for JobGrants {
    /// What jobs queued before grants existed get: `/out` at the default quota, nothing else.
    fn default() -> Self {
        JobGrants {
            out_quota_bytes: Grants::DEFAULT_OUT_QUOTA_MB * MIB,
            upstream: Vec::new(),
            mounts: Vec::new(),
            secrets: Vec::new(),
            allow_http: Vec::new(),
            record_http: false,
        }
    }
}

/// One input file at `/in`: its path there, and its blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// The path under `/in`: `<task>/<name>`, or `<task>/<map index>/<name>` for a mapped task.
    pub path: String,
    /// The blob's `sha256:` hash.
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a try was given, recorded with it so that `sandflow tasks replay` can run it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TryRecord {
    /// The exact context bytes (JSON text).
    pub context: String,
    /// The plugin's `sha256:` id.
    pub plugin_id: String,
    /// The try's limits.
    pub limits: Limits,
    /// Its random seed and clock start.
    pub determinism: Determinism,
    /// The files it saw at `/in`.
    pub inputs: Vec<InputFile>,
    /// The mounts it read (by name; their contents are not recorded).
    pub mounts: Vec<String>,
    /// The secrets it was given (by name; values never are).
    pub secrets: Vec<String>,
    /// The `/out` quota in bytes.
    pub out_quota_bytes: u64,
    /// The origins it could reach.
    pub allow_http: Vec<String>,
    /// Its HTTP exchanges, when the task set `record_http`.
    pub http_exchanges: Option<Vec<sandflow_sandbox::HttpExchange>>,
    /// How many HTTP requests it made.
    pub http_requests: u32,
    /// How it ended: the outcome's kind (`success`, `exit_code`, `timeout`...), after its
    /// artifacts were stored. `None` in records made before outcomes were recorded.
    #[serde(default)]
    pub outcome: Option<String>,
    /// On success, the `sha256:` of its result (as JSON, secrets redacted): what a replay's
    /// result is compared with.
    #[serde(default)]
    pub result_sha256: Option<String>,
}

impl TryRecord {
    /// Records how the try ended (its outcome once redacted, as it is reported).
    pub(crate) fn ended(&mut self, outcome: &sandflow_sandbox::Outcome) {
        self.outcome = Some(outcome_kind(outcome));
        self.result_sha256 = result_sha256(outcome);
    }
}

/// An outcome's kind, as its JSON names it (`success`, `exit_code`, ...).
pub fn outcome_kind(outcome: &sandflow_sandbox::Outcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.get("kind").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The `sha256:` of a successful outcome's result, as JSON; `None` for a failure.
pub fn result_sha256(outcome: &sandflow_sandbox::Outcome) -> Option<String> {
    use sha2::Digest;
    match outcome {
        sandflow_sandbox::Outcome::Success { result } => {
            let bytes = serde_json::to_vec(result).ok()?;
            Some(format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))))
        }
        _ => None,
    }
}

/// A try's surroundings on this worker, from before it starts until its report.
pub(crate) struct TryEnv {
    dir: PathBuf,
    pub(crate) grants: TryGrants,
    pub(crate) redactor: Redactor,
    inputs: Vec<InputFile>,
    job: JobGrants,
}

impl TryEnv {
    /// Makes the try's directories, puts its upstreams' artifacts in `/in`, resolves its mounts
    /// and opens its secrets. An error is why the try cannot start (a host error).
    pub(crate) async fn prepare(
        config: &GrantConfig,
        blobs: &Blobs,
        store: &Store,
        key: (&str, &str, i64, i64),
        job: &JobGrants,
    ) -> Result<TryEnv, String> {
        let (run_id, task_id, map_index, try_number) = key;
        let unique = format!("{}-{}", std::process::id(), next_dir_number());
        let dir =
            config.work_dir.join(safe(run_id)).join(safe(task_id)).join(format!("{map_index}-{try_number}-{unique}"));
        let mut env = TryEnv {
            dir: dir.clone(),
            grants: TryGrants::default(),
            redactor: Redactor::default(),
            inputs: Vec::new(),
            job: job.clone(),
        };
        let out = dir.join("out");
        let inputs_dir = dir.join("in");
        for d in [&out, &inputs_dir] {
            tokio::fs::create_dir_all(d).await.map_err(|e| format!("making {}: {e}", d.display()))?;
        }
        env.grants.out = Some(OutDir { host: out, quota_bytes: job.out_quota_bytes });

        let rows = store.upstream_artifacts(run_id, &job.upstream).await.map_err(|e| e.to_string())?;
        let files: Vec<(String, String)> = rows
            .iter()
            .map(|a| {
                let path = if a.map_index >= 0 {
                    format!("{}/{}/{}", a.task_id, a.map_index, a.name)
                } else {
                    format!("{}/{}", a.task_id, a.name)
                };
                env.inputs.push(InputFile { path: path.clone(), hash: a.hash.clone(), size: a.size as u64 });
                (path, a.hash.clone())
            })
            .collect();
        sandflow_blobs::out::materialize(blobs, &files, &inputs_dir)
            .await
            .map_err(|e| format!("putting the upstream artifacts in /in: {e}"))?;
        env.grants.read_only.push(ReadOnlyDir { host: inputs_dir, guest: "/in".into() });

        if !job.mounts.is_empty() {
            let declared = store.mounts().await.map_err(|e| e.to_string())?;
            for name in &job.mounts {
                let mount = declared.iter().find(|m| &m.name == name).ok_or_else(|| {
                    format!("mount {name:?} is no longer declared on this server (sandflow mounts set {name} PATH)")
                })?;
                let host = PathBuf::from(&mount.path);
                if !host.is_dir() {
                    return Err(format!("mount {name:?}: {} is not a directory on this worker", mount.path));
                }
                env.grants.read_only.push(ReadOnlyDir { host, guest: format!("/data/{name}") });
            }
        }

        if !job.secrets.is_empty() {
            let key = config.secret_key.as_ref().ok_or_else(|| {
                "this task is granted secrets, but this worker has no secret key (SANDFLOW_SECRET_KEY or \
                 the home's secret.key)"
                    .to_string()
            })?;
            let sealed = store.sealed_secrets(&job.secrets).await.map_err(|e| e.to_string())?;
            let mut values = Vec::new();
            for name in &job.secrets {
                let (_, bytes) = sealed.iter().find(|(n, _)| n == name).ok_or_else(|| {
                    format!("secret {name:?} is not set on this server (sandflow secrets set {name})")
                })?;
                let value = key.open(name, bytes).map_err(|e| e.to_string())?;
                env.grants.env.push((Grants::secret_env_name(name), value.clone()));
                values.push(value);
            }
            env.redactor = Redactor::new(values.iter().map(String::as_str));
        }

        if !job.allow_http.is_empty() {
            env.grants.http = Some(HttpGrant {
                allow: job.allow_http.clone(),
                private_origins: config.private_http.clone(),
                max_requests: config.http_max_requests,
                max_bytes: config.http_max_bytes,
                request_timeout: config.http_request_timeout,
                record: job.record_http,
                replay: None,
            });
        }
        Ok(env)
    }

    /// After the try: on success its `/out` files become artifacts (a failure to store them fails
    /// the try); then the directories go, whatever happened.
    pub(crate) async fn finish(self, blobs: &Blobs, report: &mut TryReport) -> Vec<NewArtifact> {
        let mut artifacts = Vec::new();
        if report.outcome.is_success() {
            let out = self.dir.join("out");
            match sandflow_blobs::out::collect(blobs, &out).await {
                Ok((stored, skipped)) => {
                    for (name, why) in skipped {
                        host_line(&mut report.log, &format!("[sandflow] /out/{name} is not an artifact: {why}"));
                    }
                    artifacts = stored
                        .into_iter()
                        .map(|a| NewArtifact {
                            name: a.name,
                            size: i64::try_from(a.size).unwrap_or(i64::MAX),
                            hash: a.hash,
                        })
                        .collect();
                }
                Err(e) => {
                    report.outcome =
                        sandflow_sandbox::Outcome::HostError { message: format!("storing the artifacts of /out: {e}") };
                }
            }
        }
        if let Err(e) = tokio::fs::remove_dir_all(&self.dir).await {
            tracing::warn!("removing the try's directory {}: {e}", self.dir.display());
        }
        artifacts
    }

    /// The record of this try.
    pub(crate) fn record(&self, context: &[u8], limits: &Limits, report: &TryReport) -> TryRecord {
        TryRecord {
            context: String::from_utf8_lossy(context).into_owned(),
            plugin_id: report.plugin.to_string(),
            limits: limits.clone(),
            determinism: report.determinism,
            inputs: self.inputs.clone(),
            mounts: self.job.mounts.clone(),
            secrets: self.job.secrets.clone(),
            out_quota_bytes: self.job.out_quota_bytes,
            allow_http: self.job.allow_http.clone(),
            http_exchanges: report.http.as_ref().and_then(|h| h.exchanges.clone()),
            http_requests: report.http.as_ref().map_or(0, |h| h.requests),
            outcome: None,
            result_sha256: None,
        }
    }
}

/// The record as stored: JSON, its secrets redacted.
pub(crate) fn record_json(record: &TryRecord, redactor: &Redactor) -> Option<Value> {
    serde_json::to_value(record).ok().map(|v| redactor.json(&v))
}

/// A path component from an id (ids are `[A-Za-z0-9_.-]`; `.` and `..` are not kept as such).
fn safe(id: &str) -> String {
    match id {
        "." | ".." | "" => format!("_{}", id.len()),
        other => other.replace(['/', '\\'], "_"),
    }
}

/// A number no other try directory of this process has: with the process id, two tries of one
/// instance (a clear while the old try still ends) never share a directory.
fn next_dir_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn host_line(log: &mut String, line: &str) {
    if !log.is_empty() && !log.ends_with('\n') {
        log.push('\n');
    }
    log.push_str(line);
    log.push('\n');
}
