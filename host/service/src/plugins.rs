//! One plugin at a time: upload (checked and compiled like a bundle's), metadata, bytes.

use std::collections::HashMap;
use std::sync::Mutex;

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
    /// The languages its `producers` section names (empty when unknown).
    pub languages: Vec<String>,
    pub used_by: Vec<VersionRow>,
}

/// A plugin as the list shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginSummary {
    #[serde(flatten)]
    pub plugin: PluginRow,
    pub languages: Vec<String>,
    /// The DAG versions that pin it.
    pub used_by: Vec<PluginPin>,
}

/// A DAG version pinning a plugin.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PluginPin {
    pub dag_id: String,
    pub version: String,
}

/// Each plugin's languages, by id: bytes never change under an id, so neither do they.
#[derive(Default)]
pub(crate) struct LanguageCache(Mutex<HashMap<String, Vec<String>>>);

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
        let languages = self.languages_of(id).await?;
        Ok(PluginDetail { plugin, languages, used_by })
    }

    /// Every plugin, with its languages and the versions that pin it (two queries, and each
    /// plugin's bytes read once in the server's life).
    pub async fn list_plugins(&self) -> Result<Vec<PluginSummary>> {
        let mut pins: HashMap<String, Vec<PluginPin>> = HashMap::new();
        for u in self.store.plugin_uses().await? {
            pins.entry(u.plugin_id).or_default().push(PluginPin { dag_id: u.dag_id, version: u.version });
        }
        let mut out = Vec::new();
        for plugin in self.store.plugins().await? {
            let languages = self.languages_of(&plugin.id).await?;
            let used_by = pins.remove(&plugin.id).unwrap_or_default();
            out.push(PluginSummary { plugin, languages, used_by });
        }
        Ok(out)
    }

    /// A stored plugin's languages, from the cache or its bytes.
    async fn languages_of(&self, id: &str) -> Result<Vec<String>> {
        if let Some(found) = self.languages.0.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(found.clone());
        }
        let languages = match self.store.plugin_bytes(id).await? {
            Some(bytes) => sandflow_sandbox::languages(&bytes),
            None => Vec::new(),
        };
        self.languages.0.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), languages.clone());
        Ok(languages)
    }

    /// A plugin's bytes (checked against their id on the way out of the store).
    pub async fn plugin_bytes(&self, id: &str) -> Result<Vec<u8>> {
        self.store.plugin_bytes(id).await?.ok_or_else(|| ServiceError::not_found("plugin", id))
    }
}
