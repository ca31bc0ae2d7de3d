//! One plugin at a time: upload (checked and compiled like a bundle's), metadata, bytes.

use sandflow_store::{PluginRow, VersionRow};
use serde::Serialize;

use crate::{Result, Service, ServiceError};

/// An uploaded plugin.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UploadedPlugin {
    pub plugin_id: String,
    /// `p1_command` or `p2_command`.
    pub kind: String,
    pub size: usize,
    /// The server did not have these bytes.
    pub new: bool,
}

/// A plugin and the DAG versions that pin it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginDetail {
    #[serde(flatten)]
    pub plugin: PluginRow,
    pub used_by: Vec<VersionRow>,
}

impl Service {
    /// Checks plugin bytes (compiling them, so the first run does not) and stores them by id.
    pub async fn upload_plugin(&self, bytes: Vec<u8>) -> Result<UploadedPlugin> {
        let sandbox = self.sandbox.clone();
        let (info, bytes) = tokio::task::spawn_blocking(move || (sandbox.check(&bytes), bytes))
            .await
            .map_err(|e| ServiceError::Internal(format!("checking the plugin failed: {e}")))?;
        let info = info.map_err(|e| ServiceError::InvalidPlugin(e.to_string()))?;
        let kind = sandflow_scheduler::stored_kind(info.kind);
        let new = self.store.put_plugin(info.id.as_str(), &bytes, kind).await?;
        Ok(UploadedPlugin { plugin_id: info.id.to_string(), kind: kind.as_str().to_string(), size: bytes.len(), new })
    }

    /// A plugin's metadata and the versions that pin it.
    pub async fn plugin(&self, id: &str) -> Result<PluginDetail> {
        let plugin = self.store.plugin(id).await?.ok_or_else(|| ServiceError::not_found("plugin", id))?;
        let used_by = self.store.versions_using(id).await?;
        Ok(PluginDetail { plugin, used_by })
    }

    /// A plugin's bytes (checked against their id on the way out of the store).
    pub async fn plugin_bytes(&self, id: &str) -> Result<Vec<u8>> {
        self.store.plugin_bytes(id).await?.ok_or_else(|| ServiceError::not_found("plugin", id))
    }
}
