//! DAGs as users see them: the schedule and last run, tasks, versions and experiments, the diff
//! of two versions, activation and pausing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use sandflow_core::dag::Dag;
use sandflow_core::state::RunState;
use sandflow_scheduler::StoredSpec;
use sandflow_store::{ActivateChange, DagRow, PauseChange, RunBrief, RunQuery};
use serde::Serialize;
use serde_json::{json, Value};

use crate::{Result, Service, ServiceError};

/// A stored version and the DAG it parses to.
pub(crate) type ParsedVersion = Arc<(StoredSpec, Dag)>;

/// Parsed versions, by (DAG, version). Versions are immutable, so an entry never goes stale.
#[derive(Default)]
pub(crate) struct SpecCache(Mutex<HashMap<(String, String), ParsedVersion>>);

/// Which DAGs to list.
#[derive(Debug, Clone, Default)]
pub struct DagFilter {
    /// DAGs with this tag.
    pub tag: Option<String>,
    /// DAGs of this owner.
    pub owner: Option<String>,
    pub paused: Option<bool>,
    /// DAGs whose latest run is in this state.
    pub last_run_state: Option<RunState>,
    /// DAGs whose id contains this text.
    pub search: Option<String>,
}

/// A DAG, as lists show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DagSummary {
    pub dag_id: String,
    pub active_version: String,
    /// Cron or preset; `None` for manual only.
    pub schedule: Option<String>,
    pub is_paused: bool,
    /// No file or bundle declares it any more: no scheduled runs.
    pub is_stale: bool,
    pub file: Option<String>,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub tasks: usize,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Its latest run (without conf and note: `GET /api/v1/runs/{id}` has them).
    pub last_run: Option<RunBrief>,
    /// Its latest runs, newest first (at most [`RECENT_RUNS`]), as briefly.
    pub recent_runs: Vec<RunBrief>,
    /// When the schedule next makes a run due; `None` when paused, stale or manual only.
    pub next_run: Option<chrono::DateTime<chrono::Utc>>,
}

/// How a list of DAGs is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagOrder {
    DagId,
    DagIdDesc,
    UpdatedAt,
    UpdatedAtDesc,
}

impl std::str::FromStr for DagOrder {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<DagOrder, String> {
        Ok(match s {
            "dag_id" => DagOrder::DagId,
            "-dag_id" => DagOrder::DagIdDesc,
            "updated_at" => DagOrder::UpdatedAt,
            "-updated_at" => DagOrder::UpdatedAtDesc,
            other => return Err(format!("order_by {other:?}: one of dag_id, -dag_id, updated_at, -updated_at")),
        })
    }
}

/// A page of DAGs, and how many pass the filter in all.
#[derive(Debug, Clone)]
pub struct DagPage {
    pub items: Vec<DagSummary>,
    pub total: usize,
}

/// How many of a DAG's latest runs its summary holds.
pub const RECENT_RUNS: i64 = 10;

/// What a summary needs besides the DAG's row, read for every DAG at once.
#[derive(Default)]
struct Recent {
    runs: HashMap<String, Vec<RunBrief>>,
    last_interval_end: HashMap<String, chrono::DateTime<chrono::Utc>>,
}

/// A task of a version.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TaskView {
    pub task_id: String,
    pub plugin_id: String,
    pub upstream: Vec<String>,
    pub trigger_rule: String,
    pub retries: u32,
    pub kind: String,
    pub map_over: Option<String>,
    pub pool: String,
    #[schema(value_type = Object)]
    pub params: serde_json::Map<String, Value>,
    /// What a try may touch beyond its input (DESIGN.md §9): `/out` quota, mounts, secrets (by
    /// name), HTTP origins, whether HTTP is recorded. Fields at their default are left out.
    #[schema(value_type = Object)]
    pub grants: sandflow_core::dag::Grants,
}

/// A version of a DAG, with the experiments it belongs to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `folder` or `bundle`.
    pub origin: sandflow_store::VersionOrigin,
    pub uploaded_by: Option<String>,
    pub is_active: bool,
    pub experiments: Vec<ExperimentView>,
}

/// A version's membership of an experiment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExperimentView {
    pub name: String,
    pub author: String,
    pub note: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// One DAG in full.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DagDetail {
    #[serde(flatten)]
    pub summary: DagSummary,
    pub tasks_detail: Vec<TaskView>,
    pub versions: Vec<VersionView>,
}

/// A version's spec: its file, the TOML text and the plugins it pins.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionSpec {
    pub dag_id: String,
    pub version: String,
    pub file: String,
    pub source: String,
    /// Each plugin path in the file and the id it was pinned to.
    pub plugins: BTreeMap<String, String>,
    pub tasks: Vec<TaskView>,
}

/// What changed between two versions.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct VersionDiff {
    pub dag_id: String,
    pub from: String,
    pub to: String,
    pub tasks_added: Vec<String>,
    pub tasks_removed: Vec<String>,
    pub tasks_changed: Vec<TaskChange>,
    /// DAG-level settings that differ, by name, with both values.
    #[schema(value_type = Object)]
    pub settings_changed: BTreeMap<String, [Value; 2]>,
}

/// A task present in both versions that differs.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TaskChange {
    pub task_id: String,
    /// Every field that differs, with its value in `from` and in `to`.
    #[schema(value_type = Object)]
    pub fields: BTreeMap<String, [Value; 2]>,
    /// Whether its plugin id changed (also in `fields`).
    pub plugin_changed: bool,
}

/// What pausing did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Paused {
    pub dag_id: String,
    pub is_paused: bool,
    /// It already was in that state: nothing was written.
    pub already: bool,
}

impl Service {
    /// The parsed version (from the cache, or the store).
    pub(crate) async fn version_of(&self, dag_id: &str, version: &str) -> Result<ParsedVersion> {
        let key = (dag_id.to_string(), version.to_string());
        if let Some(found) = self.specs.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(found.clone());
        }
        let spec = self.store.dag_spec(dag_id, version).await?.ok_or_else(|| ServiceError::NotFound {
            what: "version",
            id: version.to_string(),
            hint: format!(" of DAG `{dag_id}` (see GET /api/v1/dags/{dag_id}/versions)"),
        })?;
        let spec: StoredSpec = serde_json::from_value(spec)
            .map_err(|e| ServiceError::Internal(format!("stored spec of {dag_id} {version}: {e}")))?;
        let dag = spec.to_dag(&Default::default()).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let parsed = Arc::new((spec, dag));
        self.specs.0.lock().unwrap_or_else(|p| p.into_inner()).insert(key, parsed.clone());
        Ok(parsed)
    }

    /// A DAG's row, or a not-found error naming it.
    pub(crate) async fn dag_row(&self, dag_id: &str) -> Result<DagRow> {
        match self.store.dag(dag_id).await? {
            Some(row) => Ok(row),
            None => {
                let known: Vec<String> = self.store.dags().await?.into_iter().map(|d| d.dag_id).collect();
                let hint = sandflow_scheduler::known_list(&known);
                Err(ServiceError::NotFound { what: "DAG", id: dag_id.to_string(), hint })
            }
        }
    }

    /// The latest runs and scheduled interval ends of every DAG (`None`) or of some: two queries,
    /// however many DAGs.
    async fn recent(&self, of: Option<&[String]>) -> Result<Recent> {
        let mut recent = Recent::default();
        let runs = match of {
            None => self.store.recent_runs(RECENT_RUNS).await?,
            Some(ids) => self.store.recent_runs_of(RECENT_RUNS, ids).await?,
        };
        for run in runs {
            recent.runs.entry(run.dag_id.clone()).or_default().push(run);
        }
        recent.last_interval_end = self.store.last_scheduled_interval_ends().await?.into_iter().collect();
        Ok(recent)
    }

    async fn summary(&self, row: DagRow, recent: &mut Recent) -> Result<DagSummary> {
        let parsed = self.version_of(&row.dag_id, &row.active_version).await?;
        let dag = &parsed.1;
        let recent_runs = recent.runs.remove(&row.dag_id).unwrap_or_default();
        let last_run = recent_runs.first().cloned();
        let next_run = if row.is_paused || row.is_stale() {
            None
        } else {
            let last_end = recent.last_interval_end.get(&row.dag_id).copied();
            sandflow_scheduler::timetable::next_due(dag, last_end, row.created_at, chrono::Utc::now())
        };
        Ok(DagSummary {
            is_stale: row.is_stale(),
            dag_id: row.dag_id,
            active_version: row.active_version,
            schedule: dag.schedule.expr().map(String::from),
            is_paused: row.is_paused,
            file: row.file_path,
            description: dag.description.clone(),
            owner: dag.owner.clone(),
            tags: dag.tags.clone(),
            tasks: dag.tasks.len(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_run,
            recent_runs,
            next_run,
        })
    }

    /// Every DAG that passes `filter`, by id.
    pub async fn list_dags(&self, filter: &DagFilter) -> Result<Vec<DagSummary>> {
        Ok(self.list_dags_page(filter, DagOrder::DagId, 0, usize::MAX).await?.items)
    }

    /// A page of the DAGs that pass `filter`, in `order`. Only the page's DAGs have their runs
    /// read (unless `filter` asks for the last run's state), so a page of 100 of 1,000 DAGs costs
    /// what 100 DAGs do.
    pub async fn list_dags_page(
        &self,
        filter: &DagFilter,
        order: DagOrder,
        offset: usize,
        limit: usize,
    ) -> Result<DagPage> {
        let mut rows = Vec::new();
        for row in self.store.dags().await? {
            if filter.paused.is_some_and(|p| p != row.is_paused)
                || filter.search.as_ref().is_some_and(|s| !row.dag_id.contains(s.as_str()))
            {
                continue;
            }
            if filter.tag.is_some() || filter.owner.is_some() {
                let parsed = self.version_of(&row.dag_id, &row.active_version).await?;
                let dag = &parsed.1;
                if filter.tag.as_ref().is_some_and(|t| !dag.tags.contains(t))
                    || filter.owner.as_ref().is_some_and(|o| dag.owner.as_ref() != Some(o))
                {
                    continue;
                }
            }
            rows.push(row);
        }
        match order {
            DagOrder::DagId => rows.sort_by(|a, b| a.dag_id.cmp(&b.dag_id)),
            DagOrder::DagIdDesc => rows.sort_by(|a, b| b.dag_id.cmp(&a.dag_id)),
            DagOrder::UpdatedAt => rows.sort_by_key(|d| d.updated_at),
            DagOrder::UpdatedAtDesc => rows.sort_by_key(|d| std::cmp::Reverse(d.updated_at)),
        }
        let mut recent = None;
        if let Some(state) = filter.last_run_state {
            let all = self.recent(None).await?;
            rows.retain(|r| all.runs.get(&r.dag_id).and_then(|runs| runs.first()).map(|run| run.state) == Some(state));
            recent = Some(all);
        }
        let total = rows.len();
        let page: Vec<DagRow> = rows.into_iter().skip(offset).take(limit).collect();
        let mut recent = match recent {
            Some(all) => all,
            None if page.len() == total => self.recent(None).await?,
            None => self.recent(Some(&page.iter().map(|r| r.dag_id.clone()).collect::<Vec<_>>())).await?,
        };
        let mut items = Vec::with_capacity(page.len());
        for row in page {
            items.push(self.summary(row, &mut recent).await?);
        }
        Ok(DagPage { items, total })
    }

    /// One DAG: its summary, its active version's tasks and every version.
    pub async fn dag(&self, dag_id: &str) -> Result<DagDetail> {
        let row = self.dag_row(dag_id).await?;
        let active = row.active_version.clone();
        let mut recent = Recent::default();
        let query = RunQuery { dag_id: Some(dag_id.to_string()), limit: RECENT_RUNS, ..RunQuery::default() };
        let runs = self.store.list_runs(&query).await?.into_iter().map(RunBrief::from).collect();
        recent.runs.insert(dag_id.to_string(), runs);
        if let Some(end) = self.store.last_scheduled_interval_end(dag_id).await? {
            recent.last_interval_end.insert(dag_id.to_string(), end);
        }
        let summary = self.summary(row, &mut recent).await?;
        let parsed = self.version_of(dag_id, &active).await?;
        let versions = self.versions(dag_id).await?;
        Ok(DagDetail { summary, tasks_detail: parsed.1.tasks.iter().map(task_view).collect(), versions })
    }

    /// Every version of a DAG, newest first, with its experiments.
    pub async fn versions(&self, dag_id: &str) -> Result<Vec<VersionView>> {
        let row = self.dag_row(dag_id).await?;
        let mut experiments: HashMap<String, Vec<ExperimentView>> = HashMap::new();
        for e in self.store.experiments(dag_id).await? {
            experiments.entry(e.version).or_default().push(ExperimentView {
                name: e.name,
                author: e.author,
                note: e.note,
                created_at: e.created_at,
            });
        }
        Ok(self
            .store
            .versions(dag_id)
            .await?
            .into_iter()
            .map(|v| VersionView {
                is_active: v.version == row.active_version,
                experiments: experiments.remove(&v.version).unwrap_or_default(),
                version: v.version,
                created_at: v.created_at,
                origin: v.origin,
                uploaded_by: v.uploaded_by,
            })
            .collect())
    }

    /// A version's spec.
    pub async fn version_spec(&self, dag_id: &str, version: &str) -> Result<VersionSpec> {
        self.dag_row(dag_id).await?;
        let parsed = self.version_of(dag_id, version).await?;
        let (spec, dag) = &*parsed;
        Ok(VersionSpec {
            dag_id: dag_id.to_string(),
            version: version.to_string(),
            file: spec.file.clone(),
            source: spec.source.clone(),
            plugins: spec.plugins.clone(),
            tasks: dag.tasks.iter().map(task_view).collect(),
        })
    }

    /// What changed from one version to another.
    pub async fn diff_versions(&self, dag_id: &str, from: &str, to: &str) -> Result<VersionDiff> {
        self.dag_row(dag_id).await?;
        let (a, b) = (self.version_of(dag_id, from).await?, self.version_of(dag_id, to).await?);
        Ok(diff(dag_id, from, &a.1, to, &b.1))
    }

    /// Makes a stored version the one the schedule uses.
    pub async fn activate(&self, dag_id: &str, version: &str, by: &crate::auth::Principal) -> Result<bool> {
        self.dag_row(dag_id).await?;
        let audit = by.audit("dag.activate", dag_id, json!({"version": version}));
        match self.store.audited(&audit).activate_version(dag_id, version).await? {
            ActivateChange::Changed => Ok(true),
            ActivateChange::Already => Ok(false),
            ActivateChange::NoSuchVersion => Err(ServiceError::NotFound {
                what: "version",
                id: version.to_string(),
                hint: format!(" of DAG `{dag_id}`"),
            }),
        }
    }

    /// Pauses or unpauses a DAG.
    pub async fn set_paused(&self, dag_id: &str, paused: bool, by: &crate::auth::Principal) -> Result<Paused> {
        let action = if paused { "dag.pause" } else { "dag.unpause" };
        let audit = by.audit(action, dag_id, json!({}));
        let already = match self.store.audited(&audit).set_paused(dag_id, paused).await? {
            PauseChange::NoSuchDag => return Err(ServiceError::not_found("DAG", dag_id)),
            PauseChange::Changed => false,
            PauseChange::Already => true,
        };
        Ok(Paused { dag_id: dag_id.to_string(), is_paused: paused, already })
    }
}

/// A task as the API shows it.
pub fn task_view(t: &sandflow_core::dag::Task) -> TaskView {
    TaskView {
        task_id: t.id.clone(),
        plugin_id: t.plugin_id.clone(),
        upstream: t.upstream.clone(),
        trigger_rule: t.trigger_rule.as_str().to_string(),
        retries: t.retries,
        kind: serde_json::to_value(t.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        map_over: t.map_over.clone(),
        pool: t.pool.clone(),
        params: t.params.clone(),
        grants: t.grants.clone(),
    }
}

/// The fields of a task that change what it does, as JSON, by name.
fn task_fields(t: &sandflow_core::dag::Task) -> BTreeMap<&'static str, Value> {
    let secs = |d: std::time::Duration| json!(d.as_secs_f64());
    BTreeMap::from([
        ("plugin_id", json!(t.plugin_id)),
        ("params", Value::Object(t.params.clone())),
        ("upstream", json!(t.upstream)),
        ("trigger_rule", json!(t.trigger_rule.as_str())),
        ("retries", json!(t.retries)),
        ("retry_delay_s", secs(t.retry_delay)),
        ("retry_exponential_backoff", json!(t.retry_exponential_backoff)),
        ("max_retry_delay_s", t.max_retry_delay.map_or(Value::Null, secs)),
        ("timeout_s", t.timeout.map_or(Value::Null, secs)),
        ("fuel", json!(t.fuel)),
        ("memory_mb", json!(t.memory_mb)),
        ("kind", serde_json::to_value(t.kind).unwrap_or(Value::Null)),
        ("map_over", json!(t.map_over)),
        ("poke_interval_s", secs(t.poke_interval)),
        ("watch_dags", json!(t.watch_dags)),
        ("pool", json!(t.pool)),
        ("pool_slots", json!(t.pool_slots)),
        ("priority_weight", json!(t.priority_weight)),
        ("grants", serde_json::to_value(&t.grants).unwrap_or(Value::Null)),
    ])
}

fn dag_settings(d: &Dag) -> BTreeMap<&'static str, Value> {
    BTreeMap::from([
        ("schedule", json!(d.schedule.expr())),
        ("start_date", json!(d.start_date)),
        ("end_date", json!(d.end_date)),
        ("catchup", json!(d.catchup)),
        ("max_active_runs", json!(d.max_active_runs)),
        ("max_active_tasks", json!(d.max_active_tasks)),
    ])
}

fn changed(a: BTreeMap<&'static str, Value>, b: BTreeMap<&'static str, Value>) -> BTreeMap<String, [Value; 2]> {
    a.into_iter()
        .zip(b)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((name, x), (_, y))| (name.to_string(), [x, y]))
        .collect()
}

/// The difference between two parsed versions of a DAG.
pub fn diff(dag_id: &str, from: &str, a: &Dag, to: &str, b: &Dag) -> VersionDiff {
    let ids = |d: &Dag| d.tasks.iter().map(|t| t.id.clone()).collect::<std::collections::BTreeSet<_>>();
    let (in_a, in_b) = (ids(a), ids(b));
    let tasks_changed = in_a
        .intersection(&in_b)
        .filter_map(|id| {
            let (x, y) = (a.task(id)?, b.task(id)?);
            let fields = changed(task_fields(x), task_fields(y));
            (!fields.is_empty()).then(|| TaskChange {
                task_id: id.clone(),
                plugin_changed: x.plugin_id != y.plugin_id,
                fields,
            })
        })
        .collect();
    VersionDiff {
        dag_id: dag_id.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        tasks_added: in_b.difference(&in_a).cloned().collect(),
        tasks_removed: in_a.difference(&in_b).cloned().collect(),
        tasks_changed,
        settings_changed: changed(dag_settings(a), dag_settings(b)),
    }
}
