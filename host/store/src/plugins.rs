//! Plugin bytes by id (`sha256:` of the bytes): any process fetches exactly the bytes a DAG pins,
//! and every read checks them against their id.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{plugin_id_of, Result, Store, StoreError, UnknownName};

/// The two kinds of plugin the host runs (the sandbox tells them apart by their bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// A WASI preview1 core module that is a command (`_start`).
    P1Command,
    /// A WASI preview2 component of the `wasi:cli/command` world.
    P2Command,
    /// A component of the `sandflow:operator` world (plugin ABI v2).
    V2Operator,
}

impl PluginKind {
    /// The name as stored (and as the sandbox serialises its kind).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::P1Command => "p1_command",
            PluginKind::P2Command => "p2_command",
            PluginKind::V2Operator => "v2_operator",
        }
    }
}

impl std::str::FromStr for PluginKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        [PluginKind::P1Command, PluginKind::P2Command, PluginKind::V2Operator]
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownName { what: "plugin kind", name: s.to_string() })
    }
}

impl TryFrom<String> for PluginKind {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, UnknownName> {
        s.parse()
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored plugin, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PluginRow {
    /// `sha256:` of its bytes.
    pub id: String,
    #[sqlx(try_from = "String")]
    pub kind: PluginKind,
    /// Bytes of wasm.
    pub size: i64,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Stores plugin bytes under their id (no-op when present); returns whether they were new.
    /// The id is the caller's (the sandbox computes it as it checks the bytes); every read checks
    /// the bytes against it. Of several processes storing the same bytes at once, one stores them.
    pub async fn put_plugin(&self, id: &str, bytes: &[u8], kind: PluginKind) -> Result<bool> {
        self.backend.put_plugin(id, bytes, kind).await
    }

    /// One stored plugin, without its bytes.
    pub async fn plugin(&self, id: &str) -> Result<Option<PluginRow>> {
        self.backend.plugin(id).await
    }

    /// The bytes stored under `id`, if any, checked against it: bytes that hash to anything else are
    /// [`StoreError::PluginMismatch`]. The one way plugin bytes are read.
    pub async fn plugin_bytes(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let Some(bytes) = self.backend.plugin_bytes(id).await? else { return Ok(None) };
        let actual = plugin_id_of(&bytes);
        if actual != id {
            return Err(StoreError::PluginMismatch { id: id.to_string(), actual });
        }
        Ok(Some(bytes))
    }

    /// Every stored plugin (without its bytes), oldest first.
    pub async fn plugins(&self) -> Result<Vec<PluginRow>> {
        self.backend.plugins().await
    }

    /// Whether `id` is stored.
    pub async fn has_plugin(&self, id: &str) -> Result<bool> {
        self.backend.has_plugin(id).await
    }
}
