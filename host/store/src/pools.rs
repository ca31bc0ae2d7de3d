//! Pools: named numbers of slots that tasks share.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Result, Store};

/// A pool of slots that tasks share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PoolRow {
    pub name: String,
    pub slots: i64,
    pub description: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// Creates or resizes a pool (a description of `None` keeps the one it has).
    pub async fn set_pool(&self, name: &str, slots: i64, description: Option<&str>) -> Result<()> {
        self.backend.set_pool(name, slots, description, None).await
    }

    /// Every pool, by name.
    pub async fn pools(&self) -> Result<Vec<PoolRow>> {
        self.backend.pools().await
    }

    /// Deletes a pool; `false` when there was none.
    pub async fn delete_pool(&self, name: &str) -> Result<bool> {
        self.backend.delete_pool(name, None).await
    }
}
