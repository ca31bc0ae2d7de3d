//! What the UI's charts draw, each from a fixed number of queries: a DAG's grid (runs × tasks,
//! a mapped task's thousands of instances counted, not listed) and a run's timeline (queued and
//! running time of every try, and its critical path).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sandflow_core::state::TaskState;
use sandflow_store::{RunQuery, RunRow, StateCount, TryRow};
use serde::Serialize;

use crate::{Result, Service, ServiceError};

/// The most runs a grid shows.
pub const MAX_GRID_RUNS: i64 = 100;

/// A DAG's latest runs × its tasks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Grid {
    pub dag_id: String,
    /// The active version's tasks in topological order, then tasks only older runs have.
    pub tasks: Vec<GridTask>,
    /// Newest first.
    pub runs: Vec<RunRow>,
    /// By run id, then task id; a task without an instance in a run has no cell.
    #[schema(value_type = Object)]
    pub cells: BTreeMap<String, BTreeMap<String, GridCell>>,
}

/// A row of the grid.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GridTask {
    pub task_id: String,
    pub upstream: Vec<String>,
    pub kind: String,
    pub map_over: Option<String>,
}

/// A task in a run: its state and, for a mapped task, how its instances stand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GridCell {
    /// The task's state (for a mapped task, the state of the whole).
    #[schema(value_type = String)]
    pub state: Option<TaskState>,
    /// Its instances: 1, or a mapped task's count once expanded.
    pub instances: i64,
    /// How many instances are in each state.
    #[schema(value_type = Object)]
    pub states: BTreeMap<String, i64>,
    pub try_number: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A run's tries on a time line.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub run_id: String,
    pub dag_id: String,
    #[schema(value_type = String)]
    pub state: sandflow_core::state::RunState,
    /// The server's clock, where a running try's bar ends.
    pub now: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// In the version's topological order.
    pub tasks: Vec<TimelineTask>,
    /// The chain of tasks that decided when the run ended: from the last to end back through the
    /// upstream each waited for last, first task first.
    pub critical_path: Vec<String>,
}

/// A task of a timeline; a mapped task's instances are one entry, their tries merged by number.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineTask {
    pub task_id: String,
    /// Always `None`: mapped instances are merged into their task.
    pub map_index: Option<i64>,
    pub instances: i64,
    #[schema(value_type = Option<String>)]
    pub state: Option<TaskState>,
    #[schema(value_type = Object)]
    pub states: BTreeMap<String, i64>,
    pub tries: Vec<TimelineTry>,
}

/// One try (or, for a mapped task, the tries of that number of all its instances).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TimelineTry {
    pub try_number: i64,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    /// `None` while (any instance of it is) running.
    pub ended_at: Option<DateTime<Utc>>,
    /// `None` while running; of merged tries, the first that is not a success, else `success`.
    pub outcome: Option<String>,
}

impl Service {
    /// The grid of a DAG's `limit` latest runs (at most [`MAX_GRID_RUNS`]).
    pub async fn grid(&self, dag_id: &str, limit: i64) -> Result<Grid> {
        let row = self.dag_row(dag_id).await?;
        if !(1..=MAX_GRID_RUNS).contains(&limit) {
            return Err(ServiceError::Invalid(format!("limit must be 1 to {MAX_GRID_RUNS}, not {limit}")));
        }
        let parsed = self.version_of(dag_id, &row.active_version).await?;
        let query = RunQuery { dag_id: Some(dag_id.to_string()), limit, ..RunQuery::default() };
        let runs = self.store.list_runs(&query).await?;
        let run_ids: Vec<String> = runs.iter().map(|r| r.run_id.clone()).collect();
        let counts = self.store.state_counts(&run_ids).await?;
        let mut tasks: Vec<GridTask> = parsed
            .1
            .tasks
            .iter()
            .map(|t| GridTask {
                task_id: t.id.clone(),
                upstream: t.upstream.clone(),
                kind: crate::dags::task_view(t).kind,
                map_over: t.map_over.clone(),
            })
            .collect();
        let cells = grid_cells(&counts);
        for by_task in cells.values() {
            for task_id in by_task.keys() {
                if !tasks.iter().any(|t| &t.task_id == task_id) {
                    tasks.push(GridTask {
                        task_id: task_id.clone(),
                        upstream: vec![],
                        kind: String::new(),
                        map_over: None,
                    });
                }
            }
        }
        Ok(Grid { dag_id: dag_id.to_string(), tasks, runs, cells })
    }

    /// A run's tries on a time line, with its critical path.
    pub async fn timeline(&self, run_id: &str) -> Result<Timeline> {
        let run = self.store.run(run_id).await?.ok_or_else(|| ServiceError::not_found("run", run_id))?;
        let parsed = self.version_of(&run.dag_id, &run.version).await?;
        let instances = self.store.task_instances(run_id).await?;
        let tries = self.store.run_tries(run_id).await?;
        let now = Utc::now();

        let mut by_task: HashMap<&str, TimelineTask> = HashMap::new();
        for ti in &instances {
            let entry = by_task.entry(&ti.task_id).or_insert_with(|| TimelineTask {
                task_id: ti.task_id.clone(),
                map_index: None,
                instances: 0,
                state: None,
                states: BTreeMap::new(),
                tries: Vec::new(),
            });
            if ti.map_index < 0 {
                entry.state = Some(ti.state);
            } else {
                entry.instances += 1;
                *entry.states.entry(ti.state.as_str().to_string()).or_default() += 1;
            }
        }
        for entry in by_task.values_mut() {
            if entry.instances == 0 {
                entry.instances = 1;
                if let Some(state) = entry.state {
                    entry.states.insert(state.as_str().to_string(), 1);
                }
            }
        }
        let mut tries_of: HashMap<&str, Vec<&TryRow>> = HashMap::new();
        for t in &tries {
            tries_of.entry(&t.task_id).or_default().push(t);
        }
        for (task_id, tries) in tries_of {
            if let Some(entry) = by_task.get_mut(task_id) {
                entry.tries = merge_tries(&tries);
            }
        }

        let mut order: Vec<&str> = parsed.1.tasks.iter().map(|t| t.id.as_str()).collect();
        let mut rest: Vec<&str> = by_task.keys().copied().filter(|id| !order.contains(id)).collect();
        rest.sort_unstable();
        order.extend(rest);
        let ends: Vec<(String, Vec<String>, Option<DateTime<Utc>>)> = order
            .iter()
            .filter_map(|id| by_task.get(id))
            .map(|t| {
                let upstream = parsed.1.task(&t.task_id).map(|d| d.upstream.clone()).unwrap_or_default();
                let end = t.tries.iter().filter_map(|tr| Some(tr.ended_at.unwrap_or(now))).max();
                (t.task_id.clone(), upstream, end)
            })
            .collect();
        let critical_path = critical_path(&ends);
        let tasks = order.iter().filter_map(|id| by_task.remove(id)).collect();
        Ok(Timeline {
            run_id: run.run_id,
            dag_id: run.dag_id,
            state: run.state,
            now,
            started_at: run.started_at,
            ended_at: run.ended_at,
            tasks,
            critical_path,
        })
    }
}

/// The cells of a grid from the store's counts.
fn grid_cells(counts: &[StateCount]) -> BTreeMap<String, BTreeMap<String, GridCell>> {
    let mut cells: BTreeMap<String, BTreeMap<String, GridCell>> = BTreeMap::new();
    // A mapped task's instances, counted apart from its own row, then merged.
    let mut mapped: BTreeMap<(String, String), GridCell> = BTreeMap::new();
    for c in counts {
        let cell = if c.mapped {
            mapped.entry((c.run_id.clone(), c.task_id.clone())).or_default()
        } else {
            cells.entry(c.run_id.clone()).or_default().entry(c.task_id.clone()).or_default()
        };
        if !c.mapped {
            cell.state = Some(c.state);
        }
        cell.instances += c.instances;
        *cell.states.entry(c.state.as_str().to_string()).or_default() += c.instances;
        cell.try_number = cell.try_number.max(c.try_number);
        cell.started_at = match (cell.started_at, c.started_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        cell.ended_at = cell.ended_at.max(c.ended_at);
    }
    for ((run_id, task_id), children) in mapped {
        let cell = cells.entry(run_id).or_default().entry(task_id).or_default();
        cell.instances = children.instances;
        cell.states = children.states;
        cell.try_number = cell.try_number.max(children.try_number);
        cell.started_at = children.started_at.or(cell.started_at);
        cell.ended_at = cell.ended_at.max(children.ended_at);
    }
    cells
}

/// The tries of one task, one per try number: a mapped task's instances merged (earliest queue
/// and start, latest end, still running while any is).
fn merge_tries(tries: &[&TryRow]) -> Vec<TimelineTry> {
    let mut by_number: BTreeMap<i64, TimelineTry> = BTreeMap::new();
    let mut running: BTreeMap<i64, bool> = BTreeMap::new();
    for t in tries {
        let merged = by_number.entry(t.try_number).or_insert_with(|| TimelineTry {
            try_number: t.try_number,
            queued_at: t.queued_at,
            started_at: t.started_at,
            ended_at: t.ended_at,
            outcome: t.outcome.clone(),
        });
        merged.queued_at = match (merged.queued_at, t.queued_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        merged.started_at = merged.started_at.min(t.started_at);
        merged.ended_at = merged.ended_at.max(t.ended_at);
        if merged.outcome.as_deref() == Some("success") && t.outcome.is_some() {
            merged.outcome = t.outcome.clone();
        }
        *running.entry(t.try_number).or_default() |= t.ended_at.is_none();
    }
    for (number, merged) in by_number.iter_mut() {
        if running[number] {
            merged.ended_at = None;
            merged.outcome = None;
        }
    }
    by_number.into_values().collect()
}

/// The critical path of tasks given as (id, upstream, end): from the task that ended last, back
/// through the upstream that ended last before it, first task first. Tasks without an end are
/// not on it.
pub fn critical_path(tasks: &[(String, Vec<String>, Option<DateTime<Utc>>)]) -> Vec<String> {
    let end_of: HashMap<&str, DateTime<Utc>> =
        tasks.iter().filter_map(|(id, _, end)| end.map(|e| (id.as_str(), e))).collect();
    let upstream_of: HashMap<&str, &[String]> = tasks.iter().map(|(id, up, _)| (id.as_str(), up.as_slice())).collect();
    // The latest end; among equal ends the last in topological order, the one downstream.
    let Some(mut current) = tasks
        .iter()
        .enumerate()
        .filter_map(|(i, (id, _, end))| end.map(|e| (e, i, id.as_str())))
        .max()
        .map(|(_, _, id)| id)
    else {
        return Vec::new();
    };
    let mut path = vec![current.to_string()];
    while let Some(next) = upstream_of
        .get(current)
        .into_iter()
        .flat_map(|up| up.iter())
        .filter_map(|u| end_of.get(u.as_str()).map(|e| (*e, u.as_str())))
        .max()
        .map(|(_, id)| id)
    {
        if path.iter().any(|p| p == next) {
            break;
        }
        path.push(next.to_string());
        current = next;
    }
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(s: i64) -> Option<DateTime<Utc>> {
        Some(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap())
    }

    fn task(id: &str, up: &[&str], end: Option<DateTime<Utc>>) -> (String, Vec<String>, Option<DateTime<Utc>>) {
        (id.to_string(), up.iter().map(|s| s.to_string()).collect(), end)
    }

    #[test]
    fn the_critical_path_follows_the_upstream_that_ended_last() {
        // a → b (slow) → d; a → c (fast) → d; e ends early, unrelated.
        let tasks = vec![
            task("a", &[], at(10)),
            task("b", &["a"], at(100)),
            task("c", &["a"], at(20)),
            task("e", &[], at(5)),
            task("d", &["b", "c"], at(130)),
        ];
        assert_eq!(critical_path(&tasks), ["a", "b", "d"]);
    }

    #[test]
    fn tasks_that_never_ran_are_not_on_the_critical_path() {
        let tasks = vec![task("a", &[], at(10)), task("b", &["a"], None)];
        assert_eq!(critical_path(&tasks), ["a"]);
        assert!(critical_path(&[task("x", &[], None)]).is_empty());
    }

    fn count(task: &str, mapped: bool, state: TaskState, n: i64) -> StateCount {
        StateCount {
            run_id: "r".into(),
            task_id: task.into(),
            mapped,
            state,
            instances: n,
            try_number: 1,
            started_at: at(0),
            ended_at: at(1),
        }
    }

    #[test]
    fn a_mapped_cell_keeps_its_own_state_and_counts_its_instances() {
        let cells = grid_cells(&[
            count("m", true, TaskState::Success, 4990),
            count("m", false, TaskState::Running, 1),
            count("m", true, TaskState::Running, 10),
            count("plain", false, TaskState::Failed, 1),
        ]);
        let m = &cells["r"]["m"];
        assert_eq!(m.state, Some(TaskState::Running));
        assert_eq!(m.instances, 5000);
        assert_eq!(m.states, BTreeMap::from([("running".into(), 10), ("success".into(), 4990)]));
        let plain = &cells["r"]["plain"];
        assert_eq!((plain.state, plain.instances), (Some(TaskState::Failed), 1));
        assert_eq!(plain.states, BTreeMap::from([("failed".into(), 1)]));
    }
}
