//! What a use case can refuse, as variants callers tell apart, each with a stable code. The HTTP
//! API maps them to statuses in one place; the CLI maps them to exit codes.

use sandflow_bundle::Diagnostic;
use sandflow_store::StoreError;

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The thing named does not exist.
    #[error("no {what} `{}`{hint}", sandflow_core::text::shorten(.id, 100))]
    NotFound {
        /// `DAG`, `run`, `plugin`, `version`...
        what: &'static str,
        /// The id asked for.
        id: String,
        /// What exists instead, or how to find it (empty or starting with `: `/` (`).
        hint: String,
    },
    /// The request is well-formed but asks for something impossible or invalid.
    #[error("{0}")]
    Invalid(String),
    /// Another request changed the same thing first (a lost race), or it already exists.
    #[error("{0}")]
    Conflict(String),
    /// A bundle failed its checks: every diagnostic, and nothing was stored.
    #[error("the bundle was refused: {} problem(s), nothing was stored", .0.len())]
    BundleRejected(Vec<Diagnostic>),
    /// A plugin's bytes are not a plugin this server can run.
    #[error("not a plugin this server can run: {0}")]
    InvalidPlugin(String),
    /// An action was queued but no scheduler carried it out in time: it stays queued.
    #[error("{0}")]
    Timeout(String),
    /// No valid credentials: a missing, unknown, expired or revoked token, a wrong password.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed logins: wait before the next attempt.
    #[error("too many failed logins: try again in {retry_after} s")]
    TooManyAttempts { retry_after: u64 },
    /// The user's fuel budget of the day is used up.
    #[error("{user} has used {used_today} of their {fuel_per_day} fuel for today (UTC): the budget is spent")]
    OverBudget { user: String, used_today: i64, fuel_per_day: i64 },
    /// The store failed (not the caller's fault).
    #[error(transparent)]
    Store(StoreError),
    /// Anything else that is not the caller's fault.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The stable code for programs (`{"code": ...}` in the API).
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::NotFound { .. } => "not_found",
            ServiceError::Invalid(_) => "invalid",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::BundleRejected(_) => "bundle_rejected",
            ServiceError::InvalidPlugin(_) => "invalid_plugin",
            ServiceError::Timeout(_) => "timeout",
            ServiceError::Unauthenticated(_) => "unauthenticated",
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::TooManyAttempts { .. } => "too_many_attempts",
            ServiceError::OverBudget { .. } => "over_budget",
            ServiceError::Store(StoreError::LostRace(_)) => "lost_race",
            ServiceError::Store(_) | ServiceError::Internal(_) => "internal",
        }
    }

    /// Whether the caller's request was at fault (anything else is logged and hidden).
    pub fn is_callers(&self) -> bool {
        !matches!(self.code(), "internal")
    }

    pub(crate) fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        ServiceError::NotFound { what, id: id.into(), hint: String::new() }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchDag(dag_id) => ServiceError::not_found("DAG", dag_id),
            StoreError::RunExists { run_id } => ServiceError::Conflict(format!("a run `{run_id}` already exists")),
            other => ServiceError::Store(other),
        }
    }
}

impl From<sandflow_scheduler::SchedulerError> for ServiceError {
    fn from(e: sandflow_scheduler::SchedulerError) -> Self {
        use sandflow_scheduler::SchedulerError as E;
        match e {
            E::UnknownDag { dag_id, known } => {
                ServiceError::NotFound { what: "DAG", hint: sandflow_scheduler::known_list(&known), id: dag_id }
            }
            E::UnknownVersion { dag_id, version } => {
                ServiceError::NotFound { what: "version", id: version, hint: format!(" of DAG `{dag_id}`") }
            }
            E::Store(e) => e.into(),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// A use case's result.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
