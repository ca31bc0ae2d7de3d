//! Deterministic replay of a recorded try ([`TryRecord`]): the same plugin bytes, context bytes,
//! limits, `/in` files, random seed and clock start, and (when the task recorded them) the same HTTP
//! responses; then what came out compared with what the try left ([`compare`]).
//!
//! The caller finds the pieces (from the home's store and blobs, or over the API) and says where
//! they differ from the record (a plugin or context given on purpose): this module only runs and
//! compares, so a laptop with a copy of the record replays exactly what a worker ran.

use std::fmt;
use std::path::{Path, PathBuf};

use sandflow_blobs::Blobs;
use sandflow_core::secrets::Redactor;
use sandflow_sandbox::{HttpGrant, KillSwitch, LiveLog, OutDir, Plugin, ReadOnlyDir, Sandbox, TryGrants, TryReport};

use crate::grants::TryRecord;
pub use crate::grants::{outcome_kind, result_sha256};

/// What a replay runs: the record, and what the replaying machine supplies for it.
pub struct ReplayPlan<'a> {
    /// The try's record.
    pub record: &'a TryRecord,
    /// The plugin to run: the recorded one, or another on purpose (`--plugin`).
    pub plugin: &'a Plugin,
    /// The context bytes to run with: `None` for the recorded ones.
    pub context: Option<&'a [u8]>,
    /// Holds the blobs of the record's `/in` files.
    pub inputs: &'a Blobs,
    /// The record's mounts, as this machine has them (by name: their contents were not recorded).
    pub mounts: Vec<(String, PathBuf)>,
    /// The record's secrets, opened: (name, value). A secret left out is not given.
    pub secrets: Vec<(String, String)>,
    /// A scratch folder for the replay's `/out`, `/in` and blobs (made, and emptied after).
    pub work_dir: &'a Path,
}

/// A file the replay left in `/out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayedArtifact {
    /// Its path under `/out`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its `sha256:` hash.
    pub hash: String,
}

/// What a replay gave.
#[derive(Debug)]
pub struct Replayed {
    /// The try's report (its outcome redacted of the secrets it was given).
    pub report: TryReport,
    /// The `sha256:` of its result, on success.
    pub result_sha256: Option<String>,
    /// The files it left in `/out`, by name.
    pub artifacts: Vec<ReplayedArtifact>,
    /// What the replay could not give as the try had it (unrecorded HTTP, mounts, secrets).
    pub notes: Vec<String>,
}

/// Why a replay is not the try it replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// Another plugin ran.
    Plugin { recorded: String, replayed: String },
    /// It ran with other context bytes.
    Context,
    /// It ended another way.
    Outcome { recorded: String, replayed: String },
    /// Its result is not the same bytes.
    Result { recorded: String, replayed: String },
    /// An artifact has other contents.
    ArtifactChanged { name: String, recorded: String, replayed: String },
    /// The try left this artifact; the replay did not.
    ArtifactMissing { name: String },
    /// The replay left this file; the try did not.
    ArtifactExtra { name: String },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Plugin { recorded, replayed } => write!(f, "plugin: recorded {recorded}, replayed {replayed}"),
            Difference::Context => write!(f, "context: not the recorded bytes"),
            Difference::Outcome { recorded, replayed } => {
                write!(f, "outcome: recorded {recorded}, replayed {replayed}")
            }
            Difference::Result { recorded, replayed } => write!(f, "result: recorded {recorded}, replayed {replayed}"),
            Difference::ArtifactChanged { name, recorded, replayed } => {
                write!(f, "artifact {name}: recorded {recorded}, replayed {replayed}")
            }
            Difference::ArtifactMissing { name } => write!(f, "artifact {name}: recorded, not left by the replay"),
            Difference::ArtifactExtra { name } => write!(f, "artifact {name}: left by the replay, not recorded"),
        }
    }
}

/// Runs the recorded try again. An error is why it could not be set up (an input blob missing, a
/// folder that cannot be made); a try that fails is a [`Replayed`] with that outcome.
pub async fn replay(sandbox: &Sandbox, plan: ReplayPlan<'_>) -> Result<Replayed, String> {
    let work_dir = plan.work_dir.to_path_buf();
    let replayed = replay_in(sandbox, plan).await;
    if let Err(e) = tokio::fs::remove_dir_all(&work_dir).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("removing the replay's folder {}: {e}", work_dir.display());
        }
    }
    replayed
}

async fn replay_in(sandbox: &Sandbox, plan: ReplayPlan<'_>) -> Result<Replayed, String> {
    let record = plan.record;
    let mut notes = Vec::new();
    let out = plan.work_dir.join("out");
    let inputs_dir = plan.work_dir.join("in");
    let blob_dir = plan.work_dir.join("blobs");
    for d in [&out, &inputs_dir, &blob_dir] {
        tokio::fs::create_dir_all(d).await.map_err(|e| format!("making {}: {e}", d.display()))?;
    }
    let files: Vec<(String, String)> = record.inputs.iter().map(|f| (f.path.clone(), f.hash.clone())).collect();
    sandflow_blobs::out::materialize(plan.inputs, &files, &inputs_dir)
        .await
        .map_err(|e| format!("putting the recorded inputs in /in: {e}"))?;

    let mut grants = TryGrants {
        out: Some(OutDir { host: out.clone(), quota_bytes: record.out_quota_bytes }),
        read_only: vec![ReadOnlyDir { host: inputs_dir, guest: "/in".into() }],
        determinism: record.determinism,
        ..TryGrants::default()
    };
    for name in &record.mounts {
        match plan.mounts.iter().find(|(n, _)| n == name) {
            Some((_, host)) => {
                notes
                    .push(format!("mount {name}: read from {} as it is now (mounts are not recorded)", host.display()));
                grants.read_only.push(ReadOnlyDir { host: host.clone(), guest: format!("/data/{name}") });
            }
            None => notes.push(format!("mount {name}: not on this machine, so /data/{name} is missing")),
        }
    }
    let mut values = Vec::new();
    for name in &record.secrets {
        match plan.secrets.iter().find(|(n, _)| n == name) {
            Some((_, value)) => {
                grants.env.push((sandflow_core::dag::Grants::secret_env_name(name), value.clone()));
                values.push(value.as_str());
            }
            None => notes.push(format!("secret {name}: not available here, so it was not given")),
        }
    }
    let redactor = Redactor::new(values);
    if !record.allow_http.is_empty() {
        let exchanges = match &record.http_exchanges {
            Some(exchanges) => {
                notes.push(format!("HTTP: {} recorded responses served, no request sent", exchanges.len()));
                exchanges.clone()
            }
            None => {
                if record.http_requests > 0 {
                    notes.push(format!(
                        "HTTP: the try made {} requests without record_http, so they were not recorded: \
                         the replay refuses them",
                        record.http_requests
                    ));
                }
                Vec::new()
            }
        };
        grants.http = Some(HttpGrant {
            allow: record.allow_http.clone(),
            private_origins: Vec::new(),
            max_requests: u32::try_from(exchanges.len()).unwrap_or(u32::MAX),
            max_bytes: u64::MAX,
            request_timeout: std::time::Duration::from_secs(30),
            record: false,
            replay: Some(exchanges),
        });
    }

    let context = plan.context.unwrap_or(record.context.as_bytes());
    let mut report =
        sandbox.run_granted(plan.plugin, context, &record.limits, &grants, &KillSwitch::new(), &LiveLog::new()).await;
    crate::worker::redact(&mut report, &redactor);

    let mut artifacts = Vec::new();
    if report.outcome.is_success() {
        let blobs = Blobs::open(&blob_dir.display().to_string()).map_err(|e| e.to_string())?;
        let (stored, skipped) = sandflow_blobs::out::collect(&blobs, &out).await.map_err(|e| e.to_string())?;
        for (name, why) in skipped {
            notes.push(format!("/out/{name} is not an artifact: {why}"));
        }
        artifacts = stored.into_iter().map(|a| ReplayedArtifact { name: a.name, size: a.size, hash: a.hash }).collect();
    }
    let result_sha256 = result_sha256(&report.outcome);
    Ok(Replayed { report, result_sha256, artifacts, notes })
}

/// How the replay differs from the try: `recorded_artifacts` are the (name, hash) the try left,
/// `context_changed` whether it ran on other context bytes. Empty: identical.
pub fn compare(
    record: &TryRecord,
    recorded_artifacts: &[(String, String)],
    replayed: &Replayed,
    context_changed: bool,
) -> Vec<Difference> {
    let mut differences = Vec::new();
    let plugin = replayed.report.plugin.to_string();
    if plugin != record.plugin_id {
        differences.push(Difference::Plugin { recorded: record.plugin_id.clone(), replayed: plugin });
    }
    if context_changed {
        differences.push(Difference::Context);
    }
    let outcome = outcome_kind(&replayed.report.outcome);
    if let Some(recorded) = &record.outcome {
        if *recorded != outcome {
            differences.push(Difference::Outcome { recorded: recorded.clone(), replayed: outcome });
        }
    }
    if let (Some(recorded), Some(replayed)) = (&record.result_sha256, &replayed.result_sha256) {
        if recorded != replayed {
            differences.push(Difference::Result { recorded: recorded.clone(), replayed: replayed.clone() });
        }
    }
    for (name, hash) in recorded_artifacts {
        match replayed.artifacts.iter().find(|a| &a.name == name) {
            Some(a) if &a.hash == hash => {}
            Some(a) => differences.push(Difference::ArtifactChanged {
                name: name.clone(),
                recorded: hash.clone(),
                replayed: a.hash.clone(),
            }),
            None => differences.push(Difference::ArtifactMissing { name: name.clone() }),
        }
    }
    // A failed try left no artifacts: a replay that fails the same way leaves none either.
    if record.outcome.as_deref() == Some("success") || !recorded_artifacts.is_empty() {
        for a in &replayed.artifacts {
            if !recorded_artifacts.iter().any(|(name, _)| name == &a.name) {
                differences.push(Difference::ArtifactExtra { name: a.name.clone() });
            }
        }
    }
    differences
}
