//! Users, their tokens, their fuel budgets, and the audit log of every change.
//!
//! The store keeps only what cannot give a caller away: a token's SHA-256 (the token itself is
//! shown once, by whoever made it) and a password's argon2 hash (made by the service). Every
//! write here records its audit entry in the same transaction, so a change and its record are
//! committed together or not at all.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{Result, Store, UnknownName};

/// What a user may do, each role all that the one before it may and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// A viewer who uploads bundles and experiments, and triggers, clears and marks runs of
    /// their own experiments.
    Author,
    /// An author who triggers, clears, marks, pauses and backfills any DAG.
    Operator,
    /// An operator who manages users, pools and budgets and activates versions.
    Admin,
}

impl Role {
    /// Every role, from the least to the most.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Author, Role::Operator, Role::Admin];

    /// The name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Author => "author",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownName { what: "role (viewer, author, operator, admin)", name: s.to_string() })
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, UnknownName> {
        s.parse()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user, as anyone may see it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UserRow {
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// A disabled user's tokens and password are refused.
    pub disabled: bool,
    /// Whether the user can log in with a password (else with tokens only).
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
}

/// A user with the password hash a login checks against. Its `Debug` hides the hash.
#[derive(Clone, sqlx::FromRow)]
pub struct UserCredentials {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials").field("user", &self.user).field("password_hash", &"***").finish()
    }
}

/// A change to a user; `None` keeps what it is.
#[derive(Default)]
pub struct UserChange<'a> {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<&'a str>,
}

/// A token as listed: never its secret, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TokenRow {
    /// The token's public id (`tok_` and 12 hex digits), to revoke it by.
    pub id: String,
    /// Whose it is.
    pub user_name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// What it was made for (`login`, `cli`, `first start`...).
    pub purpose: String,
}

/// A token to record: its public id and the SHA-256 (hex) of its secret.
pub struct NewToken<'a> {
    pub id: &'a str,
    pub user_name: &'a str,
    pub hash: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    pub purpose: &'a str,
}

/// The token a hash belongs to, with its owner: what authenticating a request reads.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenOwner {
    #[sqlx(flatten)]
    pub token: TokenRow,
    /// The stored hash, compared again in constant time by the caller.
    pub hash: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub disabled: bool,
}

/// Whose fuel a budget limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct BudgetRow {
    /// `user` or `role`.
    pub subject_kind: String,
    /// The user's name or the role's.
    pub subject: String,
    /// Fuel a day (UTC) the subject's runs may use.
    pub fuel_per_day: i64,
    pub updated_at: DateTime<Utc>,
}

/// One change, or one refused attempt at a change: who, what, to what, when, from where.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The user's name (`-` when the caller was not known, e.g. a failed login's unknown name).
    pub actor: String,
    /// What was done (`user.add`, `token.create`, `dag.trigger`, `login`...).
    pub action: String,
    /// What it was done to (a user, a DAG, a run...).
    pub target: String,
    /// `ok`, or `refused` with the reason in `detail`.
    pub outcome: String,
    /// The address the request came from (`local` for the command line on this machine).
    pub address: String,
    /// What else there is to know (the role given, the run's id, why it was refused...).
    #[sqlx(json)]
    pub detail: Value,
}

/// An audit entry to record.
#[derive(Debug, Clone)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub address: String,
    pub detail: Value,
}

/// Which audit entries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// An action, or a prefix of one ending in `.` (`user.`).
    pub action: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<String>,
    /// Only entries older than this id (the page before).
    pub before_id: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// How many users there are (none: a new home, whose first start makes an admin).
    pub async fn count_users(&self) -> Result<i64> {
        self.backend.count_users().await
    }

    /// Adds a user; `false` when the name is taken (nothing written).
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        password_hash: Option<&str>,
        audit: &NewAudit,
    ) -> Result<bool> {
        self.backend.create_user(name, role, password_hash, audit).await
    }

    /// Every user, by name.
    pub async fn users(&self) -> Result<Vec<UserRow>> {
        self.backend.users().await
    }

    /// One user with the password hash to check a login against.
    pub async fn user_credentials(&self, name: &str) -> Result<Option<UserCredentials>> {
        self.backend.user_credentials(name).await
    }

    /// Changes a user; `false` when there is no such user (nothing written).
    pub async fn change_user(&self, name: &str, change: &UserChange<'_>, audit: &NewAudit) -> Result<bool> {
        self.backend.change_user(name, change, audit).await
    }

    /// Records a token (its hash); the user must exist.
    pub async fn create_token(&self, token: &NewToken<'_>, audit: &NewAudit) -> Result<bool> {
        self.backend.create_token(token, audit).await
    }

    /// The token with this hash and its owner, revoked and expired ones included (the caller
    /// tells them apart).
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenOwner>> {
        self.backend.token_by_hash(hash).await
    }

    /// Tokens, of one user or of all, newest first.
    pub async fn tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenRow>> {
        self.backend.tokens(user_name).await
    }

    /// Revokes a token at once; `false` when there is no such token or it was revoked already.
    pub async fn revoke_token(&self, id: &str, audit: &NewAudit) -> Result<bool> {
        self.backend.revoke_token(id, audit).await
    }

    /// Records an audit entry on its own (a refused attempt, a failed login).
    pub async fn record_audit(&self, audit: &NewAudit) -> Result<()> {
        self.backend.record_audit(audit).await
    }

    /// Audit entries, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        self.backend.audit(query).await
    }

    /// Sets (or, with `None`, removes) the daily fuel budget of a user or a role.
    pub async fn set_budget(
        &self,
        subject_kind: &str,
        subject: &str,
        fuel_per_day: Option<i64>,
        audit: &NewAudit,
    ) -> Result<bool> {
        self.backend.set_budget(subject_kind, subject, fuel_per_day, audit).await
    }

    /// Every budget.
    pub async fn budgets(&self) -> Result<Vec<BudgetRow>> {
        self.backend.budgets().await
    }

    /// The fuel used by tries that ended since `since`, of runs `user` triggered.
    pub async fn fuel_used_by(&self, user: &str, since: DateTime<Utc>) -> Result<i64> {
        self.backend.fuel_used_by(user, since).await
    }
}

/// `user.` filters by prefix; anything else is an exact action.
pub(crate) fn split_action(action: Option<&str>) -> (Option<&str>, Option<&str>) {
    match action {
        Some(a) if a.ends_with('.') => (None, Some(a)),
        other => (other, None),
    }
}

/// The store's changes that users make, each committed with its audit entry in one transaction:
/// `store.audited(&entry).set_paused(...)`. The plain [`Store`] methods record none (the
/// scheduler's own changes, the DAG folder's loads).
pub struct Audited<'a> {
    pub(crate) store: &'a Store,
    pub(crate) audit: &'a NewAudit,
}

impl Store {
    /// These changes, audited as `audit`.
    pub fn audited<'a>(&'a self, audit: &'a NewAudit) -> Audited<'a> {
        Audited { store: self, audit }
    }
}

impl Audited<'_> {
    /// [`Store::record_versions`], audited (a push: recorded even when nothing was new).
    pub async fn record_versions(&self, versions: &[crate::NewVersion<'_>]) -> Result<Vec<crate::Recorded>> {
        self.store.backend.record_versions(versions, Some(self.audit)).await
    }

    /// [`Store::activate_version`], audited when it changed the active version.
    pub async fn activate_version(&self, dag_id: &str, version: &str) -> Result<crate::ActivateChange> {
        self.store.backend.activate_version(dag_id, version, Some(self.audit)).await
    }

    /// [`Store::set_paused`], audited when it changed the DAG.
    pub async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<crate::PauseChange> {
        self.store.backend.set_paused(dag_id, paused, Some(self.audit)).await
    }

    /// [`Store::create_run`], audited when the run was created.
    pub async fn create_run(&self, run: &crate::NewRun, task_ids: &[String]) -> Result<bool> {
        self.store.backend.create_run(run, task_ids, Some(self.audit)).await
    }

    /// [`Store::enqueue_action`], audited.
    pub async fn enqueue_action(&self, kind: &str, payload: &Value, requested_by: &str) -> Result<i64> {
        self.store.backend.enqueue_action(kind, payload, requested_by, Some(self.audit)).await
    }

    /// [`Store::set_pool`], audited.
    pub async fn set_pool(&self, name: &str, slots: i64, description: Option<&str>) -> Result<()> {
        self.store.backend.set_pool(name, slots, description, Some(self.audit)).await
    }

    /// [`Store::delete_pool`], audited when a pool was deleted.
    pub async fn delete_pool(&self, name: &str) -> Result<bool> {
        self.store.backend.delete_pool(name, Some(self.audit)).await
    }
}
