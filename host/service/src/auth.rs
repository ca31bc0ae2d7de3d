//! Who is asking, and may they: users, tokens, logins, roles, fuel budgets and the audit log.
//!
//! - **Tokens** are 256 random bits from the OS, shown once as `sf_` and 64 hex digits; the
//!   store keeps their SHA-256 only (a random secret needs no slow hash), looked up by it and
//!   compared again in constant time. Expiry, revocation and a disabled user are checked on every
//!   request, so each takes effect at once. [`IssuedToken`]'s `Debug` hides the secret.
//! - **Passwords** are hashed with argon2id (off the async threads); an unknown user costs a
//!   login the same hash as a wrong password, so timing does not tell names apart.
//! - **Failed logins are slowed down** per user and per address ([`LoginThrottle`]): a few free
//!   tries, then each failure doubles the wait before the next attempt is even checked.
//! - **Roles** are checked per route by the API; what depends on the data (an author's own
//!   experiments) is checked here, by [`Service::check_may_trigger`] and
//!   [`Service::check_may_change_run`].
//! - Every change made here is recorded in the audit log in the same transaction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sandflow_store::{AuditQuery, AuditRow, BudgetRow, NewAudit, NewToken, Role, TokenRow, UserChange, UserRow};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Digest;

use crate::{Result, Service, ServiceError};

/// How long a token from a login lasts.
pub const LOGIN_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The shortest password a user may have.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Who makes a request: a user and their role, and where they asked from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The token it came with (`None` for the command line on this machine).
    pub token_id: Option<String>,
    /// The address the request came from, or `local`.
    pub address: String,
}

impl Principal {
    /// The command line on this machine, with the store open: it could change the database
    /// directly, so it is an admin; it is named after the operating system's user.
    pub fn local(os_user: &str) -> Principal {
        Principal { name: os_user.to_string(), role: Role::Admin, token_id: None, address: "local".into() }
    }

    /// Whether this principal's role is at least `role`.
    pub fn is_at_least(&self, role: Role) -> bool {
        self.role >= role
    }

    /// An audit entry of a change this principal makes.
    pub fn audit(&self, action: &str, target: &str, detail: Value) -> NewAudit {
        NewAudit {
            actor: self.name.clone(),
            action: action.into(),
            target: target.into(),
            outcome: "ok".into(),
            address: self.address.clone(),
            detail,
        }
    }
}

/// A token just made: the only time its secret is seen.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    /// The public id, to list and revoke it by.
    pub id: String,
    /// The secret to send as `Authorization: Bearer ...`.
    pub token: String,
    pub user: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("token", &"***")
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A change to a user; `None` keeps what it is.
#[derive(Default)]
pub struct UserEdit {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

/// Whose fuel a budget limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetSubject {
    User(String),
    Role(Role),
}

impl BudgetSubject {
    fn kind_and_name(&self) -> (&'static str, &str) {
        match self {
            BudgetSubject::User(name) => ("user", name),
            BudgetSubject::Role(role) => ("role", role.as_str()),
        }
    }
}

/// A user's fuel today, against their budget.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BudgetView {
    pub user: String,
    pub role: Role,
    /// The budget that applies (the user's own, else their role's); `None`: no limit.
    pub fuel_per_day: Option<i64>,
    /// `user` or `role`: where the budget comes from.
    pub budget_of: Option<String>,
    /// Fuel of tries that ended today (UTC), of runs the user triggered.
    pub used_today: i64,
    pub remaining: Option<i64>,
}

/// Failed logins per user and per address, and how long each must wait before the next try.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    wait_until: Instant,
}

/// Failures that cost nothing; each one after them doubles the wait (1 s, 2 s, 4 s...).
const FREE_FAILURES: u32 = 5;
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Keys kept at most (an attacker cycling addresses must not grow memory without bound).
const MAX_KEYS: usize = 100_000;

impl LoginThrottle {
    /// How long `keys` must still wait, if any must.
    fn wait(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.failures.lock().unwrap();
        keys.iter().filter_map(|key| failures.get(key)).filter(|f| f.wait_until > now).map(|f| f.wait_until - now).max()
    }

    fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap();
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER && f.wait_until > now);
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures { count: 0, last: now, wait_until: now });
            if now.duration_since(entry.last) > FORGET_AFTER {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
            if entry.count >= FREE_FAILURES {
                let doublings = (entry.count - FREE_FAILURES).min(16);
                entry.wait_until = now + Duration::from_secs(1 << doublings).min(MAX_WAIT);
            }
        }
    }

    fn succeeded(&self, user_key: &str) {
        self.failures.lock().unwrap().remove(user_key);
    }
}

/// The SHA-256 of a token's secret, as the store keeps it.
fn token_hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| ServiceError::Internal(format!("the OS gave no random bytes: {e}")))?;
    Ok(hex::encode(buf))
}

/// A user name: 1 to 64 letters, digits and `.`, `_`, `-`, `@`.
pub fn check_user_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "a user name is 1 to 64 letters, digits and . _ - @, not {:?}",
            sandflow_core::text::shorten(name, 80)
        )))
    }
}

fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ServiceError::Invalid(format!("a password has at least {MIN_PASSWORD_CHARS} characters")));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ServiceError::Internal(format!("the OS gave no random bytes: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ServiceError::Internal(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ServiceError::Internal(format!("hashing a password: {e}")))
}

/// Checks `password` against a stored hash; with none (an unknown user, a tokens-only user) it
/// checks against a fixed hash, so the time taken does not say which.
fn verify_password(password: &str, stored: Option<&str>) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not the password of anyone").unwrap_or_default());
    let (hash, real) = match stored {
        Some(hash) => (hash, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else { return false };
    argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && real
}

fn unauthenticated(why: &str) -> ServiceError {
    ServiceError::Unauthenticated(why.to_string())
}

impl Service {
    /// The principal a bearer token stands for. Refused (401): an unknown token, a revoked or
    /// expired one, one of a disabled user.
    pub async fn authenticate(&self, secret: &str, address: &str) -> Result<Principal> {
        use subtle::ConstantTimeEq;
        let hash = token_hash(secret.trim());
        let owner = self.store.token_by_hash(&hash).await?.ok_or_else(|| unauthenticated("unknown token"))?;
        if !bool::from(owner.hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(unauthenticated("unknown token"));
        }
        if owner.token.revoked_at.is_some() {
            return Err(unauthenticated("this token was revoked"));
        }
        if owner.token.expires_at.is_some_and(|at| at <= Utc::now()) {
            return Err(unauthenticated("this token has expired"));
        }
        if owner.disabled {
            return Err(unauthenticated("this user is disabled"));
        }
        Ok(Principal {
            name: owner.token.user_name,
            role: owner.role,
            token_id: Some(owner.token.id),
            address: address.to_string(),
        })
    }

    /// Logs in with a password and returns a new token (valid [`LOGIN_TOKEN_LIFETIME`]). A wrong
    /// name or password is one answer (401); too many failures of one user or from one address
    /// are refused before the password is checked (429, with how long to wait). Failed logins are
    /// in the audit log.
    pub async fn login(&self, name: &str, password: &str, address: &str) -> Result<IssuedToken> {
        let user_key = format!("user:{}", sandflow_core::text::shorten(name, 64));
        let keys = [user_key.clone(), format!("address:{address}")];
        if let Some(wait) = self.logins.wait(&keys) {
            self.record_refused(name, "login", name, address, "too many failed logins").await;
            return Err(ServiceError::TooManyAttempts { retry_after: wait.as_secs().max(1) });
        }
        let credentials = self.store.user_credentials(name).await?;
        let stored = credentials.as_ref().and_then(|c| c.password_hash.clone());
        let given = password.to_string();
        let matches = tokio::task::spawn_blocking(move || verify_password(&given, stored.as_deref()))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let user = match credentials {
            Some(c) if matches && !c.user.disabled => c.user,
            _ => {
                self.logins.failed(&keys);
                self.record_refused(name, "login", name, address, "wrong user name or password").await;
                return Err(unauthenticated("wrong user name or password"));
            }
        };
        self.logins.succeeded(&user_key);
        let by = Principal { name: user.name.clone(), role: user.role, token_id: None, address: address.into() };
        self.issue_token(&by, &user.name, Some(LOGIN_TOKEN_LIFETIME), "login").await
    }

    /// Adds a user (an admin's use case), with a password or for tokens only.
    pub async fn add_user(&self, by: &Principal, name: &str, role: Role, password: Option<&str>) -> Result<UserRow> {
        check_user_name(name)?;
        let hash = match password {
            Some(p) => Some(hash_password(p)?),
            None => None,
        };
        let audit = by.audit("user.add", name, json!({"role": role, "password": hash.is_some()}));
        if !self.store.create_user(name, role, hash.as_deref(), &audit).await? {
            return Err(ServiceError::Conflict(format!("a user `{name}` exists already")));
        }
        self.user(name).await
    }

    /// One user.
    pub async fn user(&self, name: &str) -> Result<UserRow> {
        match self.store.user_credentials(name).await? {
            Some(c) => Ok(c.user),
            None => Err(ServiceError::not_found("user", name)),
        }
    }

    /// Every user.
    pub async fn users(&self) -> Result<Vec<UserRow>> {
        Ok(self.store.users().await?)
    }

    /// Changes a user's role, password, or whether they are disabled. A disabled user's
    /// tokens are refused from the next request on.
    pub async fn change_user(&self, by: &Principal, name: &str, edit: UserEdit) -> Result<UserRow> {
        let hash = match &edit.password {
            Some(p) => Some(hash_password(p)?),
            None => None,
        };
        if by.name == name && (edit.disabled == Some(true) || edit.role.is_some_and(|r| r < Role::Admin)) {
            let admins = self.store.users().await?.iter().filter(|u| u.role == Role::Admin && !u.disabled).count();
            if admins <= 1 {
                return Err(ServiceError::Invalid("the last admin cannot disable or demote themselves".into()));
            }
        }
        let change = UserChange { role: edit.role, disabled: edit.disabled, password_hash: hash.as_deref() };
        let detail = json!({"role": edit.role, "disabled": edit.disabled, "password": edit.password.is_some()});
        if !self.store.change_user(name, &change, &by.audit("user.change", name, detail)).await? {
            return Err(ServiceError::not_found("user", name));
        }
        self.user(name).await
    }

    /// Makes a token for `user`, valid for `lifetime` (or until revoked).
    pub async fn issue_token(
        &self,
        by: &Principal,
        user: &str,
        lifetime: Option<Duration>,
        purpose: &str,
    ) -> Result<IssuedToken> {
        let id = format!("tok_{}", random_hex(6)?);
        let secret = format!("sf_{}", random_hex(32)?);
        let expires_at = match lifetime {
            Some(d) => Some(
                Utc::now()
                    + chrono::Duration::from_std(d)
                        .map_err(|_| ServiceError::Invalid("a token's lifetime is too long".into()))?,
            ),
            None => None,
        };
        let hash = token_hash(&secret);
        let token = NewToken { id: &id, user_name: user, hash: &hash, expires_at, purpose };
        let audit =
            by.audit("token.create", user, json!({"token_id": id, "expires_at": expires_at, "purpose": purpose}));
        if !self.store.create_token(&token, &audit).await? {
            return Err(ServiceError::not_found("user", user));
        }
        let role = self.user(user).await?.role;
        Ok(IssuedToken { id, token: secret, user: user.to_string(), role, expires_at })
    }

    /// Revokes a token: refused from the next request on.
    pub async fn revoke_token(&self, by: &Principal, id: &str) -> Result<()> {
        if !self.store.revoke_token(id, &by.audit("token.revoke", id, json!({}))).await? {
            return Err(ServiceError::NotFound {
                what: "token",
                id: id.to_string(),
                hint: " (or it was revoked already; see `sandflow users tokens`)".into(),
            });
        }
        Ok(())
    }

    /// Logging out: the caller's own token is revoked (any role may end its own session).
    /// A caller without a token (the local command line) has nothing to revoke.
    pub async fn logout(&self, by: &Principal) -> Result<()> {
        match &by.token_id {
            Some(id) => self.revoke_token(by, id).await,
            None => Err(ServiceError::Invalid("no token to revoke: this caller did not come with one".into())),
        }
    }

    /// Tokens, of one user or of all.
    pub async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRow>> {
        Ok(self.store.tokens(user).await?)
    }

    /// On a store with no users: makes `admin` with a token that does not expire, and returns
    /// it (to be shown once and kept in the home). `None` when there are users already.
    pub async fn first_admin(&self) -> Result<Option<IssuedToken>> {
        if self.store.count_users().await? > 0 {
            return Ok(None);
        }
        let by = Principal { name: "sandflow".into(), role: Role::Admin, token_id: None, address: "local".into() };
        match self.add_user(&by, "admin", Role::Admin, None).await {
            Ok(_) => {}
            // Another process made it first: its token is the one.
            Err(ServiceError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
        Ok(Some(self.issue_token(&by, "admin", None, "first start").await?))
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        Ok(self.store.audit(query).await?)
    }

    /// Records a refused attempt to change something (a missing role, a failed login). A
    /// failure to record it is logged, never hidden behind the refusal's answer.
    pub async fn record_refused(&self, actor: &str, action: &str, target: &str, address: &str, why: &str) {
        let entry = NewAudit {
            actor: if actor.is_empty() { "-".into() } else { sandflow_core::text::shorten(actor, 100).into_owned() },
            action: action.into(),
            target: sandflow_core::text::shorten(target, 300).into_owned(),
            outcome: "refused".into(),
            address: address.into(),
            detail: json!({"reason": why}),
        };
        if let Err(e) = self.store.record_audit(&entry).await {
            tracing::error!(error = %e, action, "could not record a refused attempt in the audit log");
        }
    }

    /// Sets (or with `None` removes) a daily fuel budget.
    pub async fn set_budget(&self, by: &Principal, subject: &BudgetSubject, fuel_per_day: Option<i64>) -> Result<()> {
        if fuel_per_day.is_some_and(|f| f < 0) {
            return Err(ServiceError::Invalid("a fuel budget is 0 or more".into()));
        }
        if let BudgetSubject::User(name) = subject {
            self.user(name).await?;
        }
        let (kind, name) = subject.kind_and_name();
        let target = format!("{kind}:{name}");
        let action = if fuel_per_day.is_some() { "budget.set" } else { "budget.remove" };
        let audit = by.audit(action, &target, json!({"fuel_per_day": fuel_per_day}));
        if !self.store.set_budget(kind, name, fuel_per_day, &audit).await? && fuel_per_day.is_none() {
            return Err(ServiceError::NotFound { what: "budget", id: target, hint: String::new() });
        }
        Ok(())
    }

    /// Every budget.
    pub async fn budgets(&self) -> Result<Vec<BudgetRow>> {
        Ok(self.store.budgets().await?)
    }

    /// A user's fuel today against their budget.
    pub async fn budget_of(&self, name: &str) -> Result<BudgetView> {
        self.budget_for(self.user(name).await?).await
    }

    async fn budget_for(&self, user: UserRow) -> Result<BudgetView> {
        let budgets = self.store.budgets().await?;
        let own = budgets.iter().find(|b| b.subject_kind == "user" && b.subject == user.name);
        let of_role = budgets.iter().find(|b| b.subject_kind == "role" && b.subject == user.role.as_str());
        let budget = own.or(of_role);
        let midnight = Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        let used_today = self.store.fuel_used_by(&user.name, midnight).await?;
        Ok(BudgetView {
            user: user.name,
            role: user.role,
            fuel_per_day: budget.map(|b| b.fuel_per_day),
            budget_of: budget.map(|b| b.subject_kind.clone()),
            used_today,
            remaining: budget.map(|b| (b.fuel_per_day - used_today).max(0)),
        })
    }

    /// Refuses a trigger by a user whose budget is used up (429 with the figures). Names that
    /// are not users (the command line's OS user) have no budget.
    pub(crate) async fn check_budget(&self, user: &str) -> Result<()> {
        let Some(credentials) = self.store.user_credentials(user).await? else { return Ok(()) };
        let view = self.budget_for(credentials.user).await?;
        match view.fuel_per_day {
            Some(budget) if view.used_today >= budget => {
                Err(ServiceError::OverBudget { user: view.user, used_today: view.used_today, fuel_per_day: budget })
            }
            _ => Ok(()),
        }
    }

    /// May `who` trigger a run of `dag_id` (of `experiment`)? Operators may trigger anything;
    /// an author only the experiments they pushed.
    pub async fn check_may_trigger(&self, who: &Principal, dag_id: &str, experiment: Option<&str>) -> Result<()> {
        if who.is_at_least(Role::Operator) {
            return Ok(());
        }
        if who.role == Role::Author {
            if let Some(name) = experiment {
                if self.is_author_of(who, dag_id, name).await? {
                    return Ok(());
                }
                return Err(self
                    .refuse(who, "dag.trigger", dag_id, "an author triggers only their own experiments")
                    .await);
            }
        }
        Err(self.refuse(who, "dag.trigger", dag_id, "triggering a DAG's active version needs the operator role").await)
    }

    /// May `who` clear or mark run `run_id`? Operators may; an author only a run of an
    /// experiment they pushed.
    pub async fn check_may_change_run(&self, who: &Principal, action: &str, run_id: &str) -> Result<()> {
        if who.is_at_least(Role::Operator) {
            return Ok(());
        }
        let run = self.store.run(run_id).await?.ok_or_else(|| ServiceError::not_found("run", run_id))?;
        if who.role == Role::Author {
            if let Some(name) = &run.experiment {
                if self.is_author_of(who, &run.dag_id, name).await? {
                    return Ok(());
                }
            }
            return Err(self.refuse(who, action, run_id, "an author changes only runs of their own experiments").await);
        }
        Err(self.refuse(who, action, run_id, "this needs the operator role").await)
    }

    /// Creates or resizes a pool.
    pub async fn set_pool(&self, by: &Principal, name: &str, slots: i64, description: Option<&str>) -> Result<()> {
        let audit = by.audit("pool.set", name, json!({"slots": slots, "description": description}));
        Ok(self.store.audited(&audit).set_pool(name, slots, description).await?)
    }

    /// Deletes a pool; `false` when there was none.
    pub async fn delete_pool(&self, by: &Principal, name: &str) -> Result<bool> {
        Ok(self.store.audited(&by.audit("pool.delete", name, json!({}))).delete_pool(name).await?)
    }

    /// May `who` download plugins' bytes? As the server is set (`--plugin-downloads ROLE`).
    pub fn check_may_download_plugins(&self, who: &Principal) -> Result<()> {
        let need = self.config.plugin_downloads;
        if who.is_at_least(need) {
            return Ok(());
        }
        Err(ServiceError::Forbidden(format!(
            "this server lets the {need} role and above download plugins (you are {} with the {} role)",
            who.name, who.role
        )))
    }

    /// Whether `who` pushed experiment `name` of `dag_id`.
    async fn is_author_of(&self, who: &Principal, dag_id: &str, name: &str) -> Result<bool> {
        Ok(self.store.experiments(dag_id).await?.iter().any(|e| e.name == name && e.author == who.name))
    }

    /// Records a refusal and returns its error (403).
    pub async fn refuse(&self, who: &Principal, action: &str, target: &str, why: &str) -> ServiceError {
        self.record_refused(&who.name, action, target, &who.address, why).await;
        ServiceError::Forbidden(format!("{} (you are {} with the {} role)", why, who.name, who.role))
    }
}
