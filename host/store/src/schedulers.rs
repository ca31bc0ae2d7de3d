//! Heartbeats: live schedulers say so every second; a command-line tool hands actions to a live
//! one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Result, Store};

/// A scheduler's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SchedulerRow {
    pub id: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

impl Store {
    /// A scheduler says it is alive.
    pub async fn heartbeat(&self, id: &str, pid: u32, started_at: DateTime<Utc>) -> Result<()> {
        self.backend.heartbeat(id, pid, started_at).await
    }

    /// A scheduler stops.
    pub async fn remove_scheduler(&self, id: &str) -> Result<()> {
        self.backend.remove_scheduler(id).await
    }

    /// Whether a scheduler has said it is alive within `max_age`.
    pub async fn live_scheduler(&self, max_age: Duration) -> Result<bool> {
        Ok(!self.live_schedulers(max_age).await?.is_empty())
    }

    /// The schedulers that have said they are alive within `max_age`, latest heartbeat first.
    pub async fn live_schedulers(&self, max_age: Duration) -> Result<Vec<SchedulerRow>> {
        let since = Utc::now() - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::zero());
        self.backend.live_schedulers(since).await
    }
}
