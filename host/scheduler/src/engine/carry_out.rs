//! Carrying out users' actions: clear (kill, then reset) and mark.

use chrono::{DateTime, Utc};
use sandflow_core::state::{RunState, TaskState};
use sandflow_store::Change;
use tracing::info;

use super::{now, Scheduler};
use crate::actions::{Action, MarkState};
use crate::working::StateChange;
use crate::SchedulerError;

impl Scheduler {
    /// Carries out one action (JSON); `Ok(summary)` or `Err(message)` for the user. Store failures
    /// are the scheduler's own errors.
    pub(super) async fn carry_out(
        &mut self,
        payload: &serde_json::Value,
        by: &str,
    ) -> Result<Result<String, String>, SchedulerError> {
        let action: Action = match serde_json::from_value(payload.clone()) {
            Ok(action) => action,
            Err(e) => return Ok(Err(format!("not an action this scheduler understands: {e}"))),
        };
        info!(by, ?action, "carrying out an action");
        match action {
            Action::Clear { dag_id, run_ids, task_ids, map_index, downstream, upstream, only_failed } => {
                let mut cleared = 0;
                let mut killed = 0;
                for run_id in &run_ids {
                    match self
                        .clear_run(&dag_id, run_id, &task_ids, map_index, downstream, upstream, only_failed)
                        .await?
                    {
                        Ok((c, k)) => {
                            cleared += c;
                            killed += k;
                        }
                        Err(message) => return Ok(Err(message)),
                    }
                }
                Ok(Ok(format!(
                    "cleared {cleared} task instance{} in {} run{} (killed {killed} running tr{})",
                    plural(cleared),
                    run_ids.len(),
                    plural(run_ids.len()),
                    if killed == 1 { "y" } else { "ies" }
                )))
            }
            Action::Mark { dag_id, run_id, task_id, map_index, state } => {
                self.mark(&dag_id, &run_id, task_id, map_index, state, by).await
            }
        }
    }

    /// Makes sure a run is in the working set (finished runs are loaded back); checks its DAG.
    async fn ensure_loaded(&mut self, dag_id: &str, run_id: &str) -> Result<Result<(), String>, SchedulerError> {
        if !self.runs.contains_key(run_id) {
            match self.store.run(run_id).await? {
                Some(row) if row.dag_id == dag_id => self.load_run(row).await?,
                _ => return Ok(Err(format!("DAG `{dag_id}` has no run `{run_id}`"))),
            }
        }
        self.sync_claims(run_id).await?;
        Ok(Ok(()))
    }

    /// Whether the instance's try is running (its worker kills it at its next lease renewal,
    /// once the clear or mark is committed).
    fn kill(&mut self, run_id: &str, task_id: &str, map_index: i64) -> bool {
        self.runs
            .get(run_id)
            .and_then(|run| run.ti(task_id, map_index))
            .is_some_and(|m| m.state() == TaskState::Running)
    }

    /// Brings memory up to what workers did: queued instances of the run that a worker has
    /// claimed are running (memory learns of claims only from reports otherwise).
    async fn sync_claims(&mut self, run_id: &str) -> Result<(), SchedulerError> {
        let rows = self.store.task_instances(run_id).await?;
        if let Some(run) = self.runs.get_mut(run_id) {
            for row in rows.iter().filter(|r| r.state == TaskState::Running) {
                let try_number = u32::try_from(row.try_number).unwrap_or(0);
                run.claimed(&row.task_id, row.map_index, try_number, row.started_at.unwrap_or_else(now));
            }
        }
        Ok(())
    }

    /// A finished run that is changed by hand runs again, so its state is decided anew.
    fn reopen(&mut self, run_id: &str, at: DateTime<Utc>, changes: &mut Vec<Change>) {
        if let Some(run) = self.runs.get_mut(run_id) {
            if run.row.state.is_finished() {
                run.set_run_state(RunState::Running, at, changes);
            }
        }
        self.dirty.insert(run_id.to_string());
    }

    #[allow(clippy::too_many_arguments)]
    async fn clear_run(
        &mut self,
        dag_id: &str,
        run_id: &str,
        task_ids: &[String],
        map_index: Option<i64>,
        downstream: bool,
        upstream: bool,
        only_failed: bool,
    ) -> Result<Result<(usize, usize), String>, SchedulerError> {
        if let Err(message) = self.ensure_loaded(dag_id, run_id).await? {
            return Ok(Err(message));
        }
        let at = now();
        let run = &self.runs[run_id];
        for task_id in task_ids {
            if run.graph.task(task_id).is_none() {
                return Ok(Err(format!("run {run_id} has no task `{task_id}`")));
            }
        }
        let selected: Vec<String> = if task_ids.is_empty() {
            run.dag().tasks.iter().map(|t| t.id.clone()).collect()
        } else {
            run.graph.closure(task_ids, downstream, upstream)
        };
        let selected: std::collections::HashSet<String> = selected.into_iter().collect();
        let failed = |s: TaskState| matches!(s, TaskState::Failed | TaskState::UpstreamFailed);
        let mut targets: Vec<(String, i64)> = Vec::new();
        for (task_id, index, state) in run.instances() {
            // A removed instance is history: nothing brings it back but a new expansion.
            if state == TaskState::Removed || !selected.contains(&task_id) || (only_failed && !failed(state)) {
                continue;
            }
            // One mapped instance: that instance and its parent, so the parent settles again.
            if let Some(wanted) = map_index {
                if task_ids.contains(&task_id) && index >= 0 && index != wanted {
                    continue;
                }
            }
            targets.push((task_id, index));
        }
        let mut changes = Vec::new();
        let mut killed = 0;
        for (task_id, index) in &targets {
            if self.kill(run_id, task_id, *index) {
                killed += 1;
            }
            let run = self.runs.get_mut(run_id).expect("loaded above");
            let keeps_children = map_index.is_some() && *index < 0;
            if keeps_children {
                // The parent of a cleared instance runs again, its other instances as they were.
                run.set_state(task_id, -1, StateChange::to(TaskState::Running), at, &mut changes);
                continue;
            }
            run.reset(task_id, *index, at, &mut changes);
        }
        self.reopen(run_id, at, &mut changes);
        self.store.apply(&changes).await?;
        Ok(Ok((targets.len(), killed)))
    }

    async fn mark(
        &mut self,
        dag_id: &str,
        run_id: &str,
        task_id: Option<String>,
        map_index: Option<i64>,
        state: MarkState,
        by: &str,
    ) -> Result<Result<String, String>, SchedulerError> {
        if let Err(message) = self.ensure_loaded(dag_id, run_id).await? {
            return Ok(Err(message));
        }
        let at = now();
        let target = match state {
            MarkState::Success => TaskState::Success,
            MarkState::Failed => TaskState::Failed,
        };
        let reason = format!("marked {target} by {by}");
        let mut changes = Vec::new();
        let instances = self.runs[run_id].instances();
        let chosen: Vec<(String, i64)> = match &task_id {
            Some(task_id) => {
                if self.runs[run_id].graph.task(task_id).is_none() {
                    return Ok(Err(format!("run {run_id} has no task `{task_id}`")));
                }
                instances
                    .into_iter()
                    .filter(|(t, i, s)| {
                        t == task_id
                            && map_index.is_none_or(|m| m == *i || *i < 0)
                            && (*i < 0 || !s.is_finished() || map_index.is_some())
                    })
                    .map(|(t, i, _)| (t, i))
                    .collect()
            }
            None => instances.into_iter().filter(|(_, _, s)| !s.is_finished()).map(|(t, i, _)| (t, i)).collect(),
        };
        for (task, index) in &chosen {
            self.kill(run_id, task, *index);
            let run = self.runs.get_mut(run_id).expect("loaded above");
            run.set_state(task, *index, StateChange::because(target, reason.clone()), at, &mut changes);
        }
        let summary = match task_id {
            Some(task) => {
                self.reopen(run_id, at, &mut changes);
                format!("marked {task} {target} in run {run_id}")
            }
            None => {
                let run_state = match state {
                    MarkState::Success => RunState::Success,
                    MarkState::Failed => RunState::Failed,
                };
                if let Some(mut run) = self.runs.remove(run_id) {
                    run.set_run_state(run_state, at, &mut changes);
                }
                format!(
                    "marked run {run_id} {run_state} ({} unfinished task instance{} marked {target})",
                    chosen.len(),
                    plural(chosen.len())
                )
            }
        };
        self.store.apply(&changes).await?;
        Ok(Ok(summary))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
