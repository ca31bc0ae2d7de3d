//! Users' actions (clear, mark...): queued by whoever asks, claimed by one scheduler (a guarded
//! write: of two schedulers claiming it, one wins), finished by the one that claimed it. The table
//! is also the audit log.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{Result, Store, StoreError, UnknownName};

/// Where an action is: `pending → running → done | failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    /// Queued, not yet claimed.
    Pending,
    /// Claimed by a scheduler, being carried out.
    Running,
    /// Carried out; its result says what it did.
    Done,
    /// Could not be carried out; its result says why.
    Failed,
}

impl ActionState {
    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Pending => "pending",
            ActionState::Running => "running",
            ActionState::Done => "done",
            ActionState::Failed => "failed",
        }
    }
}

impl std::str::FromStr for ActionState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        [ActionState::Pending, ActionState::Running, ActionState::Done, ActionState::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownName { what: "action state", name: s.to_string() })
    }
}

impl TryFrom<String> for ActionState {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, UnknownName> {
        s.parse()
    }
}

impl std::fmt::Display for ActionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's action (clear, mark...): the request, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ActionRow {
    pub id: i64,
    /// What kind of action (`clear`, `mark`: the scheduler's names).
    pub kind: String,
    /// What was asked, as the scheduler's `Action` serialises it.
    #[sqlx(json)]
    pub payload: Value,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub state: ActionState,
    pub result: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Records a user's action for a scheduler to carry out; returns its id.
    pub async fn enqueue_action(&self, kind: &str, payload: &Value, requested_by: &str) -> Result<i64> {
        self.backend.enqueue_action(kind, payload, requested_by, None).await
    }

    /// Takes a pending action for this process (`pending → running`); `false` when another took
    /// it first.
    pub async fn claim_action(&self, id: i64) -> Result<bool> {
        self.backend.claim_action(id).await
    }

    /// Actions not yet claimed, oldest first.
    pub async fn pending_actions(&self) -> Result<Vec<ActionRow>> {
        self.backend.pending_actions().await
    }

    /// One action.
    pub async fn action(&self, id: i64) -> Result<Option<ActionRow>> {
        self.backend.action(id).await
    }

    /// Records how a claimed action went (`running → done | failed`, with a message); `false`
    /// when it was not running (never claimed, or finished already), and then nothing is written.
    /// Any other `state` is refused with [`StoreError::Invalid`].
    pub async fn finish_action(&self, id: i64, state: ActionState, result: &str) -> Result<bool> {
        if !matches!(state, ActionState::Done | ActionState::Failed) {
            return Err(StoreError::Invalid(format!("an action is finished as done or failed, not {state}")));
        }
        self.backend.finish_action(id, state, result).await
    }
}
