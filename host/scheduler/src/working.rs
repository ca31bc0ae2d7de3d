//! The working set of one active run, and the decisions that move it forward: trigger rules,
//! mapping (expansion and the mapped task's aggregate state), branches, run outcomes.
//!
//! These functions change the in-memory run and push the matching [`Change`]s; the engine commits
//! the changes before it acts on them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sandflow_core::dag::{Dag, Task};
use sandflow_core::state::{readiness, run_outcome, Readiness, TaskState};
use sandflow_store::{Change, RunRow, TaskInstanceRow};
use serde_json::{Map, Value};

/// A task instance: task and map index (-1 for an unmapped task or a mapped task's parent).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TaskKey {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
}

/// One task instance in memory.
#[derive(Debug, Clone)]
pub(crate) struct TaskMem {
    pub state: TaskState,
    pub try_number: u32,
    pub tries_before_clear: u32,
    pub failed_tries: u32,
    pub next_try_at: Option<DateTime<Utc>>,
    pub first_try_at: Option<DateTime<Utc>>,
    pub output: Option<Value>,
    pub map_item: Option<Value>,
}

impl TaskMem {
    pub fn new(state: TaskState) -> TaskMem {
        TaskMem {
            state,
            try_number: 0,
            tries_before_clear: 0,
            failed_tries: 0,
            next_try_at: None,
            first_try_at: None,
            output: None,
            map_item: None,
        }
    }

    pub fn from_row(row: &TaskInstanceRow) -> TaskMem {
        TaskMem {
            state: row.state,
            try_number: u32::try_from(row.try_number).unwrap_or(0),
            tries_before_clear: u32::try_from(row.tries_before_clear).unwrap_or(0),
            failed_tries: 0,
            next_try_at: row.next_try_at,
            first_try_at: row.started_at,
            output: row.output.clone(),
            map_item: row.map_item.clone(),
        }
    }

    /// Resets for a clear: back to none, output forgotten, retries counted afresh.
    pub fn reset(&mut self) {
        self.state = TaskState::None;
        self.tries_before_clear = self.try_number;
        self.failed_tries = 0;
        self.next_try_at = None;
        self.first_try_at = None;
        self.output = None;
    }
}

/// An active run in memory.
pub(crate) struct RunMem {
    pub row: RunRow,
    pub dag: Arc<Dag>,
    pub conf: Map<String, Value>,
    /// Unmapped instances, and mapped tasks' parents (map index -1).
    pub tasks: HashMap<String, TaskMem>,
    /// Mapped tasks' instances, by map index.
    pub mapped: HashMap<String, Vec<TaskMem>>,
}

impl RunMem {
    pub fn ti(&self, task_id: &str, map_index: i64) -> Option<&TaskMem> {
        if map_index < 0 {
            self.tasks.get(task_id)
        } else {
            self.mapped.get(task_id)?.get(usize::try_from(map_index).ok()?)
        }
    }

    pub fn ti_mut(&mut self, task_id: &str, map_index: i64) -> Option<&mut TaskMem> {
        if map_index < 0 {
            self.tasks.get_mut(task_id)
        } else {
            self.mapped.get_mut(task_id)?.get_mut(usize::try_from(map_index).ok()?)
        }
    }

    fn state(&self, task_id: &str) -> TaskState {
        self.tasks.get(task_id).map_or(TaskState::Removed, |m| m.state)
    }

    /// The outputs of a task's direct upstream tasks (a mapped task's output is its list).
    pub fn inputs(&self, task: &Task) -> Map<String, Value> {
        self.inputs_but(task, None)
    }

    /// The inputs of one instance: a mapped instance does not get the upstream output it maps
    /// over (its share of it is its map_item), so N instances do not carry N copies of the list.
    pub fn instance_inputs(&self, task: &Task, map_index: i64) -> Map<String, Value> {
        let mapped_from =
            task.map_over.as_deref().and_then(|e| e.strip_prefix("inputs.")).and_then(|rest| rest.split('.').next());
        self.inputs_but(task, if map_index >= 0 { mapped_from } else { None })
    }

    /// The conf one instance sees: a task mapped over `conf.<path>` does not get that list (its
    /// share of it is its map_item); `None` when the run's conf is seen as it is.
    pub fn instance_conf(&self, task: &Task, map_index: i64) -> Option<Map<String, Value>> {
        let path = task.map_over.as_deref()?.strip_prefix("conf.")?;
        if map_index < 0 {
            return None;
        }
        let keys: Vec<&str> = path.split('.').collect();
        Some(clone_without(&self.conf, &keys))
    }

    fn inputs_but(&self, task: &Task, skip: Option<&str>) -> Map<String, Value> {
        let mut inputs = Map::new();
        for up in task.upstream.iter().filter(|up| Some(up.as_str()) != skip) {
            if let Some(output) = self.tasks.get(up).and_then(|m| m.output.clone()) {
                inputs.insert(up.clone(), output);
            }
        }
        inputs
    }

    /// Every instance, for recovery and clears: (task id, map index, state).
    pub fn instances(&self) -> Vec<(String, i64, TaskState)> {
        let mut all: Vec<_> = self.tasks.iter().map(|(id, m)| (id.clone(), -1, m.state)).collect();
        for (id, children) in &self.mapped {
            all.extend(children.iter().enumerate().map(|(i, m)| (id.clone(), i as i64, m.state)));
        }
        all
    }
}

/// A copy of `map` without the value at `path` (object keys), copying nothing of what is left out.
fn clone_without(map: &Map<String, Value>, path: &[&str]) -> Map<String, Value> {
    let mut copy = Map::new();
    for (key, value) in map {
        match path {
            [leaf] if key == leaf => {}
            [first, rest @ ..] if key == first && !rest.is_empty() => match value {
                Value::Object(inner) => {
                    copy.insert(key.clone(), Value::Object(clone_without(inner, rest)));
                }
                other => {
                    copy.insert(key.clone(), other.clone());
                }
            },
            _ => {
                copy.insert(key.clone(), value.clone());
            }
        }
    }
    copy
}

/// Tasks ready to run, highest `priority_weight` first, then in the order they became ready.
#[derive(Default)]
pub(crate) struct ReadyQueue {
    heap: BinaryHeap<(i64, Reverse<u64>, TaskKey)>,
    next: u64,
}

impl ReadyQueue {
    pub fn push(&mut self, priority: i64, key: TaskKey) {
        self.next += 1;
        self.heap.push((priority, Reverse(self.next), key));
    }

    pub fn pop(&mut self) -> Option<(i64, TaskKey)> {
        self.heap.pop().map(|(priority, _, key)| (priority, key))
    }
}

#[allow(clippy::too_many_arguments)]
fn task_state(
    run_id: &str,
    task_id: &str,
    map_index: i64,
    from: TaskState,
    to: TaskState,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> Change {
    Change::TaskState { run_id: run_id.into(), task_id: task_id.into(), map_index, from, to, reason, output: None, at }
}

/// Moves a run forward by the trigger rules, in topological order, so skips and upstream failures
/// cascade in one pass. Expands mapped tasks whose turn has come, and settles mapped tasks whose
/// instances have all ended. Returns the run's final state once every task has ended.
pub(crate) fn advance_run(run: &mut RunMem, at: DateTime<Utc>, changes: &mut Vec<Change>, ready: &mut ReadyQueue) {
    let run_id = run.row.run_id.clone();
    let dag = run.dag.clone();
    for task in &dag.tasks {
        match run.state(&task.id) {
            TaskState::None => {
                let upstream: Vec<TaskState> = task.upstream.iter().map(|up| run.state(up)).collect();
                let (next, reason) = match readiness(task.trigger_rule, &upstream) {
                    Readiness::Wait => continue,
                    Readiness::Run if task.map_over.is_some() => {
                        expand(run, task, at, changes, ready);
                        continue;
                    }
                    Readiness::Run => (TaskState::Scheduled, None),
                    Readiness::Skip => {
                        (TaskState::Skipped, Some(format!("skipped by trigger rule {}", task.trigger_rule.as_str())))
                    }
                    Readiness::UpstreamFailed => {
                        (TaskState::UpstreamFailed, Some("an upstream task failed".to_string()))
                    }
                };
                if let Some(mem) = run.tasks.get_mut(&task.id) {
                    mem.state = next;
                }
                changes.push(task_state(&run_id, &task.id, -1, TaskState::None, next, reason, at));
                if next == TaskState::Scheduled {
                    ready.push(
                        task.priority_weight,
                        TaskKey { run_id: run_id.clone(), task_id: task.id.clone(), map_index: -1 },
                    );
                }
            }
            TaskState::Running if task.map_over.is_some() => settle_mapped(run, task, at, changes, ready),
            _ => {}
        }
    }
}

/// Expands a mapped task over its list: one instance per element, scheduled at once.
fn expand(run: &mut RunMem, task: &Task, at: DateTime<Utc>, changes: &mut Vec<Change>, ready: &mut ReadyQueue) {
    let run_id = run.row.run_id.clone();
    let expr = task.map_over.as_deref().unwrap_or_default();
    let inputs = run.inputs(task);
    let (state, reason) = match sandflow_core::dag::resolve_map_over(expr, &run.conf, &inputs) {
        Err(message) => (TaskState::Failed, Some(message)),
        Ok(items) if items.is_empty() => (TaskState::Skipped, Some(format!("map_over {expr} is an empty list"))),
        Ok(items) => {
            let old = run.mapped.remove(&task.id).unwrap_or_default();
            let mut children = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let mut mem = old.get(index).cloned().unwrap_or_else(|| TaskMem::new(TaskState::None));
                mem.state = TaskState::Scheduled;
                mem.map_item = Some(item.clone());
                children.push(mem);
                ready.push(
                    task.priority_weight,
                    TaskKey { run_id: run_id.clone(), task_id: task.id.clone(), map_index: index as i64 },
                );
            }
            for (index, removed) in old.iter().enumerate().skip(items.len()) {
                changes.push(task_state(
                    &run_id,
                    &task.id,
                    index as i64,
                    removed.state,
                    TaskState::Removed,
                    Some("no longer in the mapped list".into()),
                    at,
                ));
            }
            changes.push(Change::Expand { run_id: run_id.clone(), task_id: task.id.clone(), items: items.clone(), at });
            run.mapped.insert(task.id.clone(), children);
            (TaskState::Running, Some(format!("mapped over {} items", items.len())))
        }
    };
    let from = run.tasks.get(&task.id).map_or(TaskState::None, |m| m.state);
    if let Some(mem) = run.tasks.get_mut(&task.id) {
        mem.state = state;
    }
    changes.push(task_state(&run_id, &task.id, -1, from, state, reason, at));
}

/// A mapped task ends when all its instances have: success if none failed (skipped instances are
/// fine unless all were skipped), with the instances' outputs as a list in map-index order.
/// Instances left in none (after a clear) are scheduled again.
fn settle_mapped(run: &mut RunMem, task: &Task, at: DateTime<Utc>, changes: &mut Vec<Change>, ready: &mut ReadyQueue) {
    let run_id = run.row.run_id.clone();
    let Some(children) = run.mapped.get_mut(&task.id) else { return };
    let mut finished = 0;
    let mut failed = 0;
    let mut skipped = 0;
    for (index, child) in children.iter_mut().enumerate() {
        if child.state == TaskState::None {
            child.state = TaskState::Scheduled;
            changes.push(task_state(&run_id, &task.id, index as i64, TaskState::None, TaskState::Scheduled, None, at));
            ready.push(
                task.priority_weight,
                TaskKey { run_id: run_id.clone(), task_id: task.id.clone(), map_index: index as i64 },
            );
        }
        if child.state.is_finished() {
            finished += 1;
        }
        match child.state {
            TaskState::Failed | TaskState::UpstreamFailed => failed += 1,
            TaskState::Skipped | TaskState::Removed => skipped += 1,
            _ => {}
        }
    }
    if finished < children.len() {
        return;
    }
    let total = children.len();
    let outputs: Vec<Value> = children.iter().map(|c| c.output.clone().unwrap_or(Value::Null)).collect();
    let (state, reason) = if failed > 0 {
        (TaskState::Failed, Some(format!("{failed} of {total} mapped instances failed")))
    } else if skipped == total {
        (TaskState::Skipped, Some("every mapped instance was skipped".to_string()))
    } else {
        (TaskState::Success, None)
    };
    let output = Value::Array(outputs);
    changes.push(Change::TaskState {
        run_id: run_id.clone(),
        task_id: task.id.clone(),
        map_index: -1,
        from: TaskState::Running,
        to: state,
        reason,
        output: Some(output.clone()),
        at,
    });
    if let Some(mem) = run.tasks.get_mut(&task.id) {
        mem.state = state;
        mem.output = Some(output);
    }
}

/// After a branch task chose `chosen`, its other direct downstream tasks are skipped; returns
/// their ids.
pub(crate) fn skip_unchosen(
    run: &mut RunMem,
    branch: &str,
    chosen: &[String],
    at: DateTime<Utc>,
    changes: &mut Vec<Change>,
) -> Vec<String> {
    let mut skipped = Vec::new();
    let run_id = run.row.run_id.clone();
    let downstream: Vec<String> = run.dag.downstream(branch).into_iter().map(String::from).collect();
    for task_id in downstream {
        if chosen.contains(&task_id) {
            continue;
        }
        if let Some(mem) = run.tasks.get_mut(&task_id) {
            if mem.state == TaskState::None {
                mem.state = TaskState::Skipped;
                changes.push(task_state(
                    &run_id,
                    &task_id,
                    -1,
                    TaskState::None,
                    TaskState::Skipped,
                    Some(format!("not chosen by branch {branch}")),
                    at,
                ));
                skipped.push(task_id);
            }
        }
    }
    skipped
}

/// The run's state once every task has ended (by its leaves, as Airflow does).
pub(crate) fn outcome(run: &RunMem) -> Option<sandflow_core::state::RunState> {
    let states: Vec<TaskState> = run.dag.tasks.iter().map(|t| run.state(&t.id)).collect();
    let leaves: Vec<TaskState> =
        run.dag.tasks.iter().filter(|t| run.dag.downstream(&t.id).is_empty()).map(|t| run.state(&t.id)).collect();
    run_outcome(&states, &leaves)
}

/// The ids of `start` and every task downstream (or upstream) of it, transitively.
pub(crate) fn closure(dag: &Dag, start: &[String], downstream: bool, upstream: bool) -> Vec<String> {
    let mut seen: Vec<String> = start.to_vec();
    let mut queue: Vec<String> = start.to_vec();
    while let Some(id) = queue.pop() {
        let mut next: Vec<String> = Vec::new();
        if downstream {
            next.extend(dag.downstream(&id).into_iter().map(String::from));
        }
        if upstream {
            if let Some(task) = dag.task(&id) {
                next.extend(task.upstream.iter().cloned());
            }
        }
        for n in next {
            if !seen.contains(&n) {
                seen.push(n.clone());
                queue.push(n);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_without_leaves_out_only_the_path() {
        let conf: Map<String, Value> = serde_json::from_str(r#"{"items":[1,2],"a":{"b":[3],"c":4},"d":5}"#).unwrap();
        assert_eq!(Value::Object(clone_without(&conf, &["items"])), serde_json::json!({"a":{"b":[3],"c":4},"d":5}));
        assert_eq!(
            Value::Object(clone_without(&conf, &["a", "b"])),
            serde_json::json!({"items":[1,2],"a":{"c":4},"d":5})
        );
    }
}
