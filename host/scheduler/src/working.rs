//! The working set of one active run, and the decisions that move it forward: trigger rules,
//! mapping (expansion and the mapped task's aggregate state), branches, run outcomes.
//!
//! Why it is shaped this way:
//! - **One place writes a transition.** Every change of a task instance's state goes through a
//!   [`RunMem`] method that updates memory *and* pushes the matching [`Change`], so the two cannot
//!   drift apart; the engine commits the changes before it acts on them.
//! - **An event costs what it touches.** Deciding what a finished try unblocks costs in proportion
//!   to that task's downstream edges, never to the DAG or the run: tasks are indexed by position
//!   ([`Graph`]), each task keeps counts of its upstream tasks' states (trigger rules look at
//!   nothing else), each mapped task keeps counts of its instances' states, the run keeps counts of
//!   unfinished tasks and failed leaves, and only tasks whose upstream changed are looked at again.
//!   A 5,000-task chain or a 10,000-task DAG schedules at the same cost per task as a 30-task one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sandflow_core::dag::{Dag, Task};
use sandflow_core::state::{readiness_of, Readiness, RunState, TaskState, UpstreamCounts};
use sandflow_core::transition::is_legal;
use sandflow_store::{Change, QueuedJob, RunRow, TaskInstanceRow, TryEnd};
use serde_json::{Map, Value};
use tracing::error;

/// A task instance: task and map index (-1 for an unmapped task or a mapped task's parent).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TaskKey {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
}

/// A DAG version's tasks indexed by position, with their edges both ways: built once per version
/// and shared by all its runs.
pub(crate) struct Graph {
    pub dag: Arc<Dag>,
    index: HashMap<String, usize>,
    upstream: Vec<Vec<usize>>,
    downstream: Vec<Vec<usize>>,
}

impl Graph {
    pub fn new(dag: Arc<Dag>) -> Graph {
        let index: HashMap<String, usize> = dag.tasks.iter().enumerate().map(|(i, t)| (t.id.clone(), i)).collect();
        let mut upstream = vec![Vec::new(); dag.tasks.len()];
        let mut downstream = vec![Vec::new(); dag.tasks.len()];
        for (i, task) in dag.tasks.iter().enumerate() {
            for up in &task.upstream {
                if let Some(&u) = index.get(up) {
                    upstream[i].push(u);
                    downstream[u].push(i);
                }
            }
        }
        Graph { dag, index, upstream, downstream }
    }

    /// The position of a task in the DAG's topological order.
    pub fn ordinal(&self, task_id: &str) -> Option<usize> {
        self.index.get(task_id).copied()
    }

    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.ordinal(task_id).map(|i| &self.dag.tasks[i])
    }

    /// The ids of the tasks directly downstream of `task_id`, in topological order.
    pub fn downstream_ids(&self, task_id: &str) -> Vec<&str> {
        self.ordinal(task_id)
            .map(|i| self.downstream[i].iter().map(|&d| self.dag.tasks[d].id.as_str()).collect())
            .unwrap_or_default()
    }

    fn is_leaf(&self, ordinal: usize) -> bool {
        self.downstream[ordinal].is_empty()
    }

    /// The ids of `start` and every task downstream (or upstream) of it, transitively.
    pub fn closure(&self, start: &[String], downstream: bool, upstream: bool) -> Vec<String> {
        let mut seen: HashSet<usize> = HashSet::new();
        let mut queue: Vec<usize> = start.iter().filter_map(|id| self.ordinal(id)).collect();
        seen.extend(queue.iter().copied());
        while let Some(i) = queue.pop() {
            let down = if downstream { self.downstream[i].as_slice() } else { &[] };
            let up = if upstream { self.upstream[i].as_slice() } else { &[] };
            for &n in down.iter().chain(up) {
                if seen.insert(n) {
                    queue.push(n);
                }
            }
        }
        let mut ids: Vec<usize> = seen.into_iter().collect();
        ids.sort_unstable();
        ids.into_iter().map(|i| self.dag.tasks[i].id.clone()).collect()
    }
}

/// One task instance in memory. Its state is private to this module: it changes only through
/// [`RunMem`]'s methods, which also write the change.
#[derive(Debug, Clone)]
pub(crate) struct TaskMem {
    state: TaskState,
    pub try_number: u32,
    pub failed_tries: u32,
    pub next_try_at: Option<DateTime<Utc>>,
    pub first_try_at: Option<DateTime<Utc>>,
    pub output: Option<Value>,
    pub map_item: Option<Value>,
}

impl TaskMem {
    fn new(state: TaskState) -> TaskMem {
        TaskMem {
            state,
            try_number: 0,
            failed_tries: 0,
            next_try_at: None,
            first_try_at: None,
            output: None,
            map_item: None,
        }
    }

    fn from_row(row: &TaskInstanceRow) -> TaskMem {
        TaskMem {
            state: row.state,
            try_number: u32::try_from(row.try_number).unwrap_or(0),
            failed_tries: 0,
            next_try_at: row.next_try_at,
            first_try_at: row.started_at,
            output: row.output.clone(),
            map_item: row.map_item.clone(),
        }
    }

    pub fn state(&self) -> TaskState {
        self.state
    }
}

/// A mapped task's instances, with counts of how they stand.
#[derive(Debug, Default)]
struct Mapped {
    children: Vec<TaskMem>,
    finished: usize,
    failed: usize,
    skipped: usize,
    /// Some instance may be in `none` (loaded after a crash or a clear): look at each once.
    rescan: bool,
}

impl Mapped {
    fn new(children: Vec<TaskMem>) -> Mapped {
        let mut mapped = Mapped { children, rescan: true, ..Mapped::default() };
        for i in 0..mapped.children.len() {
            let state = mapped.children[i].state;
            mapped.count(state, true);
        }
        mapped
    }

    fn count(&mut self, state: TaskState, add: bool) {
        let bump = |n: &mut usize| *n = if add { *n + 1 } else { n.saturating_sub(1) };
        if state.is_finished() {
            bump(&mut self.finished);
        }
        match state {
            TaskState::Failed | TaskState::UpstreamFailed => bump(&mut self.failed),
            TaskState::Skipped | TaskState::Removed => bump(&mut self.skipped),
            _ => {}
        }
    }
}

/// How a task instance's state changes, for [`RunMem::set_state`].
pub(crate) struct StateChange {
    pub to: TaskState,
    pub reason: Option<String>,
    /// Replaces the instance's output (a mapped task's list of outputs).
    pub output: Option<Value>,
}

impl StateChange {
    pub fn to(to: TaskState) -> StateChange {
        StateChange { to, reason: None, output: None }
    }

    pub fn because(to: TaskState, reason: impl Into<String>) -> StateChange {
        StateChange { to, reason: Some(reason.into()), output: None }
    }
}

/// An active run in memory.
pub(crate) struct RunMem {
    pub row: RunRow,
    pub graph: Arc<Graph>,
    pub conf: Map<String, Value>,
    /// Unmapped instances and mapped tasks' parents (map index -1), by task position.
    tasks: Vec<TaskMem>,
    /// Mapped tasks' instances, by task position.
    mapped: Vec<Option<Mapped>>,
    /// Per task: counts of its direct upstream tasks' states.
    up: Vec<UpstreamCounts>,
    /// Tasks to look at again: their upstream changed, or their instances did.
    todo: Vec<usize>,
    /// Tasks (map index -1) not finished.
    unfinished: usize,
    /// Leaf tasks failed or upstream_failed.
    failed_leaves: usize,
}

impl RunMem {
    /// The run as the store holds it: `rows` are its task instances, `failed` the failed tries of
    /// each instance since its last clear.
    pub fn new(
        row: RunRow,
        graph: Arc<Graph>,
        rows: &[TaskInstanceRow],
        failed: &HashMap<(String, i64), i64>,
    ) -> RunMem {
        let n = graph.dag.tasks.len();
        // A task of the version without a row is no longer in it (a run of an older version).
        let mut tasks = vec![TaskMem::new(TaskState::Removed); n];
        let mut children: Vec<Vec<TaskMem>> = vec![Vec::new(); n];
        for ti in rows {
            let Some(i) = graph.ordinal(&ti.task_id) else { continue };
            let mut mem = TaskMem::from_row(ti);
            mem.failed_tries =
                failed.get(&(ti.task_id.clone(), ti.map_index)).map_or(0, |n| u32::try_from(*n).unwrap_or(0));
            if ti.map_index < 0 {
                tasks[i] = mem;
            } else {
                // Rows come ordered by task and map index.
                children[i].push(mem);
            }
        }
        let mapped = graph
            .dag
            .tasks
            .iter()
            .zip(children)
            .map(|(task, children)| task.map_over.as_ref().map(|_| Mapped::new(children)))
            .collect();
        let mut up: Vec<UpstreamCounts> = graph.upstream.iter().map(|u| UpstreamCounts::new(u.len())).collect();
        let mut unfinished = 0;
        let mut failed_leaves = 0;
        for (i, mem) in tasks.iter().enumerate() {
            for &d in &graph.downstream[i] {
                up[d].add(mem.state);
            }
            if !mem.state.is_finished() {
                unfinished += 1;
            }
            if graph.is_leaf(i) && is_failure(mem.state) {
                failed_leaves += 1;
            }
        }
        let conf = row.conf.clone();
        RunMem { row, todo: (0..n).rev().collect(), graph, conf, tasks, mapped, up, unfinished, failed_leaves }
    }

    pub fn dag(&self) -> &Dag {
        &self.graph.dag
    }

    pub fn ti(&self, task_id: &str, map_index: i64) -> Option<&TaskMem> {
        let i = self.graph.ordinal(task_id)?;
        if map_index < 0 {
            self.tasks.get(i)
        } else {
            self.mapped[i].as_ref()?.children.get(usize::try_from(map_index).ok()?)
        }
    }

    /// The instance's fields other than its state, to change.
    pub fn ti_mut(&mut self, task_id: &str, map_index: i64) -> Option<&mut TaskMem> {
        let i = self.graph.ordinal(task_id)?;
        self.mem_mut(i, map_index)
    }

    fn mem_mut(&mut self, i: usize, map_index: i64) -> Option<&mut TaskMem> {
        if map_index < 0 {
            self.tasks.get_mut(i)
        } else {
            self.mapped[i].as_mut()?.children.get_mut(usize::try_from(map_index).ok()?)
        }
    }

    fn state_of(&self, i: usize) -> TaskState {
        self.tasks[i].state
    }

    /// Moves an instance to a new state in memory, keeping every count true, and pushes the change.
    pub fn set_state(
        &mut self,
        task_id: &str,
        map_index: i64,
        change: StateChange,
        at: DateTime<Utc>,
        changes: &mut Vec<Change>,
    ) {
        let Some(i) = self.graph.ordinal(task_id) else { return };
        let output = change.output.clone();
        if let Some(from) = self.move_to(i, map_index, change.to) {
            if let (Some(output), Some(mem)) = (&output, self.mem_mut(i, map_index)) {
                mem.output = Some(output.clone());
            }
            changes.push(Change::TaskState {
                run_id: self.row.run_id.clone(),
                task_id: task_id.to_string(),
                map_index,
                from,
                to: change.to,
                reason: change.reason,
                output,
                at,
            });
        }
    }

    /// The state of instance (`i`, `map_index`) becomes `to` in memory, with the counts that
    /// follow; returns the state it had, `None` when there is no such instance.
    fn move_to(&mut self, i: usize, map_index: i64, to: TaskState) -> Option<TaskState> {
        let from = self.mem_mut(i, map_index)?.state;
        if !is_legal(from, to) {
            // The state machine has no such move: a bug here, refused rather than written.
            error!(run_id = %self.row.run_id, task = %self.graph.dag.tasks[i].id, map_index, %from, %to,
                "refusing a task instance move the state machine does not have");
            return None;
        }
        if map_index >= 0 {
            let mapped = self.mapped[i].as_mut()?;
            let child = usize::try_from(map_index).ok().and_then(|m| mapped.children.get_mut(m))?;
            let from = std::mem::replace(&mut child.state, to);
            mapped.count(from, false);
            mapped.count(to, true);
            if to == TaskState::None {
                mapped.rescan = true;
            }
            if mapped.finished == mapped.children.len() || to == TaskState::None {
                self.todo.push(i);
            }
            return Some(from);
        }
        let from = std::mem::replace(&mut self.tasks[i].state, to);
        if from == to {
            return Some(from);
        }
        for &d in &self.graph.downstream[i] {
            self.up[d].remove(from);
            self.up[d].add(to);
            self.todo.push(d);
        }
        if from.is_finished() && !to.is_finished() {
            self.unfinished += 1;
        } else if !from.is_finished() && to.is_finished() {
            self.unfinished -= 1;
        }
        if self.graph.is_leaf(i) {
            match (is_failure(from), is_failure(to)) {
                (false, true) => self.failed_leaves += 1,
                (true, false) => self.failed_leaves -= 1,
                _ => {}
            }
        }
        self.todo.push(i);
        Some(from)
    }

    /// The instance is queued for a worker to claim, with its job; returns the try number the
    /// claim will give it (0 when the instance cannot be queued).
    pub fn queue(&mut self, key: &TaskKey, job: QueuedJob, at: DateTime<Utc>, changes: &mut Vec<Change>) -> u32 {
        let Some(i) = self.graph.ordinal(&key.task_id) else { return 0 };
        let Some(from) = self.move_to(i, key.map_index, TaskState::Queued) else { return 0 };
        let Some(mem) = self.mem_mut(i, key.map_index) else { return 0 };
        mem.next_try_at = None;
        changes.push(Change::Queued {
            run_id: key.run_id.clone(),
            task_id: key.task_id.clone(),
            map_index: key.map_index,
            from,
            job: Box::new(job),
            at,
        });
        mem.try_number + 1
    }

    /// A worker claimed the queued instance (the store already says so): it is running
    /// `try_number`, which started at `started_at`. Memory only: nothing to commit.
    pub fn claimed(&mut self, task_id: &str, map_index: i64, try_number: u32, started_at: DateTime<Utc>) {
        let Some(i) = self.graph.ordinal(task_id) else { return };
        if self.ti(task_id, map_index).is_none_or(|m| m.state != TaskState::Queued) {
            return;
        }
        if self.move_to(i, map_index, TaskState::Running).is_none() {
            return;
        }
        if let Some(mem) = self.mem_mut(i, map_index) {
            mem.try_number = try_number;
            mem.first_try_at.get_or_insert(started_at);
        }
    }

    /// A try ends: the instance moves to `end.state` (with its output and retry time), and the end
    /// is pushed.
    /// A move the state machine refuses records the try alone.
    pub fn end_try(&mut self, mut end: TryEnd, output: Option<Value>, changes: &mut Vec<Change>) {
        self.move_ended(&mut end, output);
        changes.push(Change::TryEnded(Box::new(end)));
    }

    /// A reported try is judged: as [`RunMem::end_try`], committed as a judgment.
    pub fn end_judged(&mut self, mut end: TryEnd, output: Option<Value>, changes: &mut Vec<Change>) {
        self.move_ended(&mut end, output);
        changes.push(Change::Judged(Box::new(end)));
    }

    fn move_ended(&mut self, end: &mut TryEnd, output: Option<Value>) {
        if let Some(state) = end.state {
            let moved = self.graph.ordinal(&end.task_id).filter(|&i| self.move_to(i, end.map_index, state).is_some());
            match moved.and_then(|i| self.mem_mut(i, end.map_index)) {
                Some(mem) => {
                    mem.next_try_at = end.next_try_at;
                    if output.is_some() {
                        mem.output = output;
                    }
                }
                None => end.state = None,
            }
        }
    }

    /// A clear: the instance goes back to none, forgets its output, and gets its retries back.
    pub fn reset(&mut self, task_id: &str, map_index: i64, at: DateTime<Utc>, changes: &mut Vec<Change>) {
        let Some(i) = self.graph.ordinal(task_id) else { return };
        let Some(from) = self.move_to(i, map_index, TaskState::None) else { return };
        if let Some(mem) = self.mem_mut(i, map_index) {
            mem.failed_tries = 0;
            mem.next_try_at = None;
            mem.first_try_at = None;
            mem.output = None;
        }
        changes.push(Change::Reset {
            run_id: self.row.run_id.clone(),
            task_id: task_id.to_string(),
            map_index,
            from,
            at,
        });
    }

    /// The run changes state.
    pub fn set_run_state(&mut self, to: RunState, at: DateTime<Utc>, changes: &mut Vec<Change>) {
        let from = std::mem::replace(&mut self.row.state, to);
        changes.push(Change::RunState { run_id: self.row.run_id.clone(), from, to, at });
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
            if let Some(output) = self.graph.ordinal(up).and_then(|u| self.tasks[u].output.clone()) {
                inputs.insert(up.clone(), output);
            }
        }
        inputs
    }

    /// Every instance, for recovery, clears and marks: (task id, map index, state).
    pub fn instances(&self) -> Vec<(String, i64, TaskState)> {
        let mut all = Vec::new();
        for (i, task) in self.graph.dag.tasks.iter().enumerate() {
            all.push((task.id.clone(), -1, self.tasks[i].state));
            if let Some(mapped) = &self.mapped[i] {
                all.extend(mapped.children.iter().enumerate().map(|(m, c)| (task.id.clone(), m as i64, c.state)));
            }
        }
        all
    }

    /// Instances waiting for a retry or a poke, with the time they wait for (for the timers).
    pub fn waiting(&self) -> Vec<(TaskKey, DateTime<Utc>)> {
        let mut waiting = Vec::new();
        for (task_id, map_index, state) in self.instances() {
            if matches!(state, TaskState::UpForRetry | TaskState::UpForReschedule) {
                if let Some(at) = self.ti(&task_id, map_index).and_then(|m| m.next_try_at) {
                    waiting.push((TaskKey { run_id: self.row.run_id.clone(), task_id, map_index }, at));
                }
            }
        }
        waiting
    }

    /// The run's state once every task has ended (by its leaves, as Airflow does).
    pub fn outcome(&self) -> Option<RunState> {
        if self.unfinished > 0 {
            None
        } else if self.failed_leaves > 0 {
            Some(RunState::Failed)
        } else {
            Some(RunState::Success)
        }
    }

    /// Moves the run forward by the trigger rules, looking only at tasks whose upstream (or whose
    /// instances) changed since the last time: skips and upstream failures cascade in one call.
    /// Expands mapped tasks whose turn has come, and settles mapped tasks whose instances have all
    /// ended.
    pub fn advance(&mut self, at: DateTime<Utc>, changes: &mut Vec<Change>, ready: &mut ReadyQueue) {
        let graph = self.graph.clone();
        while let Some(i) = self.todo.pop() {
            let task = &graph.dag.tasks[i];
            match self.state_of(i) {
                TaskState::None => {
                    let next = match readiness_of(task.trigger_rule, &self.up[i]) {
                        Readiness::Wait => continue,
                        Readiness::Run if task.map_over.is_some() => {
                            self.expand(i, at, changes, ready);
                            continue;
                        }
                        Readiness::Run => StateChange::to(TaskState::Scheduled),
                        Readiness::Skip => StateChange::because(
                            TaskState::Skipped,
                            format!("skipped by trigger rule {}", task.trigger_rule.as_str()),
                        ),
                        Readiness::UpstreamFailed => {
                            StateChange::because(TaskState::UpstreamFailed, "an upstream task failed")
                        }
                    };
                    let scheduled = next.to == TaskState::Scheduled;
                    self.set_state(&task.id, -1, next, at, changes);
                    if scheduled {
                        ready.push(
                            task.priority_weight,
                            TaskKey { run_id: self.row.run_id.clone(), task_id: task.id.clone(), map_index: -1 },
                        );
                    }
                }
                TaskState::Running if task.map_over.is_some() => self.settle_mapped(i, at, changes, ready),
                _ => {}
            }
        }
    }

    /// Expands mapped task `i` over its list: one instance per element, scheduled at once.
    fn expand(&mut self, i: usize, at: DateTime<Utc>, changes: &mut Vec<Change>, ready: &mut ReadyQueue) {
        let graph = self.graph.clone();
        let task = &graph.dag.tasks[i];
        let run_id = self.row.run_id.clone();
        let expr = task.map_over.as_deref().unwrap_or_default();
        let inputs = self.inputs(task);
        let next = match sandflow_core::dag::resolve_map_over(expr, &self.conf, &inputs) {
            Err(message) => StateChange::because(TaskState::Failed, message),
            Ok(items) if items.is_empty() => {
                StateChange::because(TaskState::Skipped, format!("map_over {expr} is an empty list"))
            }
            Ok(items) => {
                let old = self.mapped[i].take().map(|m| m.children).unwrap_or_default();
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
                for (index, child) in old.iter().enumerate().skip(items.len()) {
                    if child.state == TaskState::Removed {
                        continue;
                    }
                    changes.push(Change::TaskState {
                        run_id: run_id.clone(),
                        task_id: task.id.clone(),
                        map_index: index as i64,
                        from: child.state,
                        to: TaskState::Removed,
                        reason: Some("no longer in the mapped list".into()),
                        output: None,
                        at,
                    });
                }
                changes.push(Change::Expand {
                    run_id: run_id.clone(),
                    task_id: task.id.clone(),
                    items: items.clone(),
                    at,
                });
                let mut mapped = Mapped::new(children);
                mapped.rescan = false;
                self.mapped[i] = Some(mapped);
                StateChange::because(TaskState::Running, format!("mapped over {} items", items.len()))
            }
        };
        self.set_state(&task.id, -1, next, at, changes);
    }

    /// A mapped task ends when all its instances have: success if none failed (skipped instances
    /// are fine unless all were skipped), with the instances' outputs as a list in map-index order.
    /// Instances left in none (after a crash or a clear) are scheduled again.
    fn settle_mapped(&mut self, i: usize, at: DateTime<Utc>, changes: &mut Vec<Change>, ready: &mut ReadyQueue) {
        let graph = self.graph.clone();
        let task = &graph.dag.tasks[i];
        let run_id = self.row.run_id.clone();
        let Some(mapped) = self.mapped[i].as_mut() else { return };
        if std::mem::take(&mut mapped.rescan) {
            for index in 0..mapped.children.len() {
                if mapped.children[index].state == TaskState::None {
                    mapped.children[index].state = TaskState::Scheduled;
                    changes.push(Change::TaskState {
                        run_id: run_id.clone(),
                        task_id: task.id.clone(),
                        map_index: index as i64,
                        from: TaskState::None,
                        to: TaskState::Scheduled,
                        reason: None,
                        output: None,
                        at,
                    });
                    ready.push(
                        task.priority_weight,
                        TaskKey { run_id: run_id.clone(), task_id: task.id.clone(), map_index: index as i64 },
                    );
                }
            }
        }
        let total = mapped.children.len();
        if mapped.finished < total {
            return;
        }
        let outputs: Vec<Value> = mapped.children.iter().map(|c| c.output.clone().unwrap_or(Value::Null)).collect();
        let next = if mapped.failed > 0 {
            StateChange::because(TaskState::Failed, format!("{} of {total} mapped instances failed", mapped.failed))
        } else if mapped.skipped == total {
            StateChange::because(TaskState::Skipped, "every mapped instance was skipped")
        } else {
            StateChange::to(TaskState::Success)
        };
        let next = StateChange { output: Some(Value::Array(outputs)), ..next };
        self.set_state(&task.id, -1, next, at, changes);
    }

    /// After a branch task chose `chosen`, its other direct downstream tasks are skipped; returns
    /// their ids.
    pub fn skip_unchosen(
        &mut self,
        branch: &str,
        chosen: &[String],
        at: DateTime<Utc>,
        changes: &mut Vec<Change>,
    ) -> Vec<String> {
        let graph = self.graph.clone();
        let mut skipped = Vec::new();
        for task_id in graph.downstream_ids(branch) {
            if chosen.iter().any(|c| c == task_id) || self.ti(task_id, -1).is_none_or(|m| m.state != TaskState::None) {
                continue;
            }
            let reason = format!("not chosen by branch {branch}");
            self.set_state(task_id, -1, StateChange::because(TaskState::Skipped, reason), at, changes);
            skipped.push(task_id.to_string());
        }
        skipped
    }
}

fn is_failure(state: TaskState) -> bool {
    matches!(state, TaskState::Failed | TaskState::UpstreamFailed)
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

/// Instances waiting for a time (a retry's delay, a sensor's next poke), earliest first. An entry
/// may be out of date (the instance was cleared meanwhile): whoever pops it checks the instance.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(DateTime<Utc>, TaskKey)>>,
}

impl Timers {
    pub fn push(&mut self, at: DateTime<Utc>, key: TaskKey) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest time waited for.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the instances whose time has come by `now`.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<TaskKey> {
        let mut due = Vec::new();
        while self.next().is_some_and(|at| at <= now) {
            if let Some(Reverse((_, key))) = self.heap.pop() {
                due.push(key);
            }
        }
        due
    }
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
