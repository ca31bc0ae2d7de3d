//! Clear and mark: queued in the store's actions table (also their audit log), carried out by the
//! scheduler that owns the store (only it can kill the tries it runs); when none does, carried
//! out here with the same code, owning the store meanwhile so that no scheduler starts halfway.

use std::time::{Duration, Instant};

use sandflow_scheduler::actions::Action;
use sandflow_store::{ActionState, StoreError};
use serde::Serialize;

use crate::auth::Principal;
use crate::{Result, Service, ServiceError};

/// How long an action waits for the scheduler to carry it out.
pub const ACTION_WAIT: Duration = Duration::from_secs(15);

/// A carried-out action.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionDone {
    pub action_id: i64,
    /// What it did, in words.
    pub result: String,
}

impl Service {
    /// Queues `action` as `by` (audited with it) and waits for its result (see the module docs).
    pub async fn perform(&self, action: &Action, by: &Principal) -> Result<ActionDone> {
        let payload = serde_json::to_value(action).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let target = match action {
            Action::Clear { run_ids, .. } if run_ids.len() == 1 => run_ids[0].clone(),
            Action::Mark { run_id, .. } => run_id.clone(),
            Action::Clear { dag_id, .. } => dag_id.clone(),
        };
        let audit = by.audit(&format!("run.{}", action.kind()), &target, payload.clone());
        let id = self.store.audited(&audit).enqueue_action(action.kind(), &payload, &by.name).await?;
        let deadline = Instant::now() + ACTION_WAIT;
        loop {
            let state = self.store.action(id).await?.map(|row| (row.state, row.result));
            match state {
                Some((ActionState::Done, result)) => {
                    return Ok(ActionDone { action_id: id, result: result.unwrap_or_default() })
                }
                Some((ActionState::Failed, result)) => return Err(ServiceError::Invalid(result.unwrap_or_default())),
                // Still pending: the owner may have read the pending actions before this one was
                // queued and has since let go, so ask again while waiting.
                Some((ActionState::Pending, _)) => {
                    if let Some(result) = self.carry_out_if_unowned(action, id).await? {
                        return result
                            .map(|result| ActionDone { action_id: id, result })
                            .map_err(ServiceError::Invalid);
                    }
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(ServiceError::Timeout(format!(
                    "the running scheduler did not carry out action {id} within {} s; it stays queued",
                    ACTION_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Clears every run of `dag_id` whose logical date is in `[from, to]`.
    pub async fn clear_range(
        &self,
        dag_id: &str,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        only_failed: bool,
        by: &Principal,
    ) -> Result<ActionDone> {
        self.dag_row(dag_id).await?;
        let runs = self.store.runs_between(dag_id, from, to).await?;
        if runs.is_empty() {
            return Err(ServiceError::Invalid(format!(
                "DAG `{dag_id}` has no runs with a logical date from {from} to {to}"
            )));
        }
        let action = Action::Clear {
            dag_id: dag_id.to_string(),
            run_ids: runs.into_iter().map(|r| r.run_id).collect(),
            task_ids: vec![],
            map_index: None,
            downstream: false,
            upstream: false,
            only_failed,
        };
        self.perform(&action, by).await
    }

    /// With no scheduler owning the store, carries out the pending actions here and returns
    /// action `id`'s result (if this process carried it out); `None` while another owns it.
    async fn carry_out_if_unowned(&self, action: &Action, id: i64) -> Result<Option<Result<String, String>>> {
        let role = format!("a {} carried out by {}", action.kind(), self.config.role);
        let _scheduling = match self.store.own_scheduling(&role).await {
            Ok(guard) => guard,
            Err(StoreError::SchedulerRunning { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let config = sandflow_scheduler::SchedulerConfig { create_scheduled_runs: false, ..Default::default() };
        let mut scheduler = sandflow_scheduler::Scheduler::new(self.store.clone(), self.sandbox.clone(), config);
        let results = scheduler.carry_out_pending().await?;
        Ok(results.into_iter().find(|(done, _)| *done == id).map(|(_, result)| result))
    }
}
