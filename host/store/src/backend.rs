//! The interface each database implements: every statement the store runs, by concern. Internal:
//! callers see [`Store`](crate::Store), whose methods add what is the same on every database.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{
    ActionRow, ActionState, Change, DagRow, ImportErrorRow, NewRun, PauseChange, PluginKind, PluginRow, PoolRow,
    Result, RunRow, SchedulerRow, SchedulingGuard, TaskInstanceRow, TryRow,
};
use crate::{ActivateChange, ExperimentRow, NewVersion, Recorded, RunQuery, VersionRow};
use crate::{
    AuditQuery, AuditRow, BudgetRow, NewAudit, NewToken, Role, TokenOwner, TokenRow, UserChange, UserCredentials,
    UserRow,
};
use crate::{Claim, ClaimRequest, ExpiredLease, HeldTry, Report, ReportFate, ReportedTry, Topic, WorkerInfo};

#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync {
    /// The database, for messages (its password redacted).
    fn describe(&self) -> String;
    fn is_postgres(&self) -> bool;
    async fn close(&self);
    async fn own_scheduling(&self, role: &str) -> Result<SchedulingGuard>;

    // ---- plugins ----
    async fn put_plugin(&self, id: &str, bytes: &[u8], kind: PluginKind) -> Result<bool>;
    async fn plugin(&self, id: &str) -> Result<Option<PluginRow>>;
    async fn plugin_bytes(&self, id: &str) -> Result<Option<Vec<u8>>>;
    async fn plugins(&self) -> Result<Vec<PluginRow>>;
    async fn has_plugin(&self, id: &str) -> Result<bool>;

    // ---- DAGs, versions, import errors ----
    async fn record_versions(&self, versions: &[NewVersion<'_>], audit: Option<&NewAudit>) -> Result<Vec<Recorded>>;
    async fn activate_version(&self, dag_id: &str, version: &str, audit: Option<&NewAudit>) -> Result<ActivateChange>;
    async fn versions(&self, dag_id: &str) -> Result<Vec<VersionRow>>;
    async fn experiments(&self, dag_id: &str) -> Result<Vec<ExperimentRow>>;
    async fn versions_using(&self, plugin_id: &str) -> Result<Vec<VersionRow>>;
    async fn record_import_error(&self, file_path: &str, dag_id: Option<&str>, message: &str) -> Result<()>;
    async fn clear_import_error(&self, file_path: &str) -> Result<()>;
    async fn mark_stale(&self, dag_id: &str) -> Result<bool>;
    async fn import_errors(&self) -> Result<Vec<ImportErrorRow>>;
    async fn dags(&self) -> Result<Vec<DagRow>>;
    async fn dag(&self, dag_id: &str) -> Result<Option<DagRow>>;
    async fn dag_spec(&self, dag_id: &str, version: &str) -> Result<Option<Value>>;
    async fn dag_versions(&self, dag_id: &str) -> Result<Vec<(String, DateTime<Utc>)>>;
    async fn set_paused(&self, dag_id: &str, paused: bool, audit: Option<&NewAudit>) -> Result<PauseChange>;

    // ---- runs ----
    async fn create_run(&self, run: &NewRun, task_ids: &[String], audit: Option<&NewAudit>) -> Result<bool>;
    async fn run(&self, run_id: &str) -> Result<Option<RunRow>>;
    async fn runs(&self, dag_id: Option<&str>, limit: i64) -> Result<Vec<RunRow>>;
    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRow>>;
    async fn count_runs(&self, query: &RunQuery) -> Result<i64>;
    async fn active_runs(&self) -> Result<Vec<RunRow>>;
    async fn last_scheduled_interval_end(&self, dag_id: &str) -> Result<Option<DateTime<Utc>>>;
    async fn runs_between(&self, dag_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<RunRow>>;
    /// Of every DAG (`None`) or of some.
    async fn recent_runs(&self, per_dag: i64, of: Option<&[String]>) -> Result<Vec<crate::RunBrief>>;
    async fn last_scheduled_interval_ends(&self) -> Result<Vec<(String, DateTime<Utc>)>>;
    async fn state_counts(&self, run_ids: &[String]) -> Result<Vec<crate::StateCount>>;
    async fn plugin_uses(&self) -> Result<Vec<crate::PluginUse>>;

    // ---- task instances and tries ----
    async fn task_instances(&self, run_id: &str) -> Result<Vec<TaskInstanceRow>>;
    async fn unfinished_instance_counts(&self) -> Result<Vec<(String, i64)>>;
    async fn failed_tries(&self, run_id: &str) -> Result<Vec<(String, i64, i64)>>;
    async fn tries(&self, run_id: &str, task_id: &str, map_index: i64) -> Result<Vec<TryRow>>;
    async fn run_tries(&self, run_id: &str) -> Result<Vec<TryRow>>;
    async fn write_running(
        &self,
        run_id: &str,
        task_id: &str,
        map_index: i64,
        try_number: i64,
        running: &crate::Running<'_>,
    ) -> Result<()>;

    // ---- guarded writes ----
    async fn apply(&self, changes: &[Change]) -> Result<()>;

    // ---- claims ----
    async fn claim(&self, request: &ClaimRequest<'_>, at: DateTime<Utc>) -> Result<Claim>;
    async fn renew_leases(&self, worker: &WorkerInfo, at: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<HeldTry>>;
    async fn remove_worker(&self, id: &str) -> Result<()>;
    async fn live_workers(&self, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>>;
    async fn report_tries(&self, worker: &str, reports: &[Report]) -> Result<Vec<ReportFate>>;
    async fn reported_tries(&self) -> Result<Vec<ReportedTry>>;
    async fn expired_leases(&self, at: DateTime<Utc>) -> Result<Vec<ExpiredLease>>;
    async fn notify(&self, topic: Topic) -> Result<()>;
    /// Forwards other processes' notifications to `wakeups` (PostgreSQL; nothing on SQLite).
    fn listen(&self, wakeups: std::sync::Arc<crate::claims::Wakeups>);

    // ---- users, tokens, budgets, audit ----
    async fn count_users(&self) -> Result<i64>;
    async fn create_user(&self, name: &str, role: Role, password_hash: Option<&str>, audit: &NewAudit) -> Result<bool>;
    async fn users(&self) -> Result<Vec<UserRow>>;
    async fn user_credentials(&self, name: &str) -> Result<Option<UserCredentials>>;
    async fn change_user(&self, name: &str, change: &UserChange<'_>, audit: &NewAudit) -> Result<bool>;
    async fn create_token(&self, token: &NewToken<'_>, audit: &NewAudit) -> Result<bool>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenOwner>>;
    async fn tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenRow>>;
    async fn revoke_token(&self, id: &str, audit: &NewAudit) -> Result<bool>;
    async fn record_audit(&self, audit: &NewAudit) -> Result<()>;
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>>;
    async fn set_budget(&self, kind: &str, subject: &str, fuel: Option<i64>, audit: &NewAudit) -> Result<bool>;
    async fn budgets(&self) -> Result<Vec<BudgetRow>>;
    async fn fuel_used_by(&self, user: &str, since: DateTime<Utc>) -> Result<i64>;

    // ---- grants: mounts, secrets, artifacts, try records ----
    async fn set_mount(&self, name: &str, path: &str, audit: &NewAudit) -> Result<()>;
    async fn mounts(&self) -> Result<Vec<crate::MountRow>>;
    async fn delete_mount(&self, name: &str, audit: &NewAudit) -> Result<bool>;
    async fn set_secret(&self, name: &str, sealed: &[u8], audit: &NewAudit) -> Result<()>;
    async fn secrets(&self) -> Result<Vec<crate::SecretRow>>;
    async fn sealed_secrets(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>>;
    async fn delete_secret(&self, name: &str, audit: &NewAudit) -> Result<bool>;
    async fn artifacts(&self, run_id: &str, task_id: Option<&str>) -> Result<Vec<crate::ArtifactRow>>;
    async fn upstream_artifacts(&self, run_id: &str, task_ids: &[String]) -> Result<Vec<crate::ArtifactRow>>;
    async fn try_record(&self, run_id: &str, task_id: &str, map_index: i64, try_number: i64) -> Result<Option<Value>>;
    async fn artifact_hashes(&self) -> Result<Vec<String>>;
    async fn delete_artifacts(&self, before: DateTime<Utc>, keep_runs: i64) -> Result<u64>;

    // ---- pools ----
    async fn set_pool(&self, name: &str, slots: i64, description: Option<&str>, audit: Option<&NewAudit>)
        -> Result<()>;
    async fn pools(&self) -> Result<Vec<PoolRow>>;
    async fn delete_pool(&self, name: &str, audit: Option<&NewAudit>) -> Result<bool>;

    // ---- actions ----
    async fn enqueue_action(
        &self,
        kind: &str,
        payload: &Value,
        requested_by: &str,
        audit: Option<&NewAudit>,
    ) -> Result<i64>;
    async fn claim_action(&self, id: i64) -> Result<bool>;
    async fn pending_actions(&self) -> Result<Vec<ActionRow>>;
    async fn action(&self, id: i64) -> Result<Option<ActionRow>>;
    async fn finish_action(&self, id: i64, state: ActionState, result: &str) -> Result<bool>;

    // ---- schedulers ----
    async fn heartbeat(&self, id: &str, pid: u32, started_at: DateTime<Utc>) -> Result<()>;
    async fn remove_scheduler(&self, id: &str) -> Result<()>;
    async fn live_schedulers(&self, since: DateTime<Utc>) -> Result<Vec<SchedulerRow>>;
}
