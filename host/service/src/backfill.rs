//! Backfills: a run for each past interval of a DAG's schedule, from the active version. The
//! intervals are cut here, once, for the CLI and the API; the runs are then the scheduler's like
//! any other (a backfill creates them and returns; watching them is the caller's choice).

use chrono::{DateTime, SecondsFormat, Utc};
use sandflow_core::state::RunState;
use sandflow_scheduler::actions::Action;
use sandflow_store::{NewRun, RunType};
use serde::Serialize;

use crate::{Result, Service, ServiceError};

/// At most this many intervals in one backfill: a typo in a date should not create a million runs.
pub const MAX_INTERVALS: usize = 10_000;

/// What a backfill asks for.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    /// The first interval start.
    pub from: DateTime<Utc>,
    /// The last interval start.
    pub to: DateTime<Utc>,
    /// Clear and rerun the failed tasks of intervals whose run failed.
    pub rerun_failed: bool,
    /// Who asks.
    pub by: crate::auth::Principal,
}

/// What a backfill did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackfillReport {
    pub dag_id: String,
    /// Intervals of the schedule that start in the range.
    pub intervals: usize,
    /// The first and last interval starts.
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// Runs created for intervals that had none.
    pub created: usize,
    /// Failed runs cleared to run again (`rerun_failed`).
    pub rerun: usize,
    /// Intervals that already had a run, left alone.
    pub skipped: usize,
    /// The runs created or rerun, for the caller to watch.
    pub run_ids: Vec<String>,
}

impl BackfillReport {
    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "backfill of {}: {} intervals from {} to {}: {} runs created, {} failed runs cleared to rerun, {} already ran",
            self.dag_id,
            self.intervals,
            self.first.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.last.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.created,
            self.rerun,
            self.skipped
        )
    }
}

impl Service {
    /// Creates a run for each interval of `dag_id`'s schedule that starts from `from` to `to`
    /// and has none yet (and, with `rerun_failed`, clears the failed ones). A paused DAG, one
    /// without a schedule, an empty or reversed range and more than [`MAX_INTERVALS`] intervals
    /// are refused before anything is written.
    pub async fn backfill(&self, dag_id: &str, request: &BackfillRequest) -> Result<BackfillReport> {
        let (from, to) = (request.from, request.to);
        if to < from {
            return Err(ServiceError::Invalid(format!("the range ends ({to}) before it starts ({from})")));
        }
        let row = self.dag_row(dag_id).await?;
        if row.is_paused {
            // A paused DAG's runs start no tasks: the backfill would wait for ever.
            return Err(ServiceError::Invalid(format!(
                "DAG `{dag_id}` is paused, so its runs start no tasks: unpause it first (sandflow dags unpause {dag_id})"
            )));
        }
        let parsed = self.version_of(dag_id, &row.active_version).await?;
        let dag = &parsed.1;
        if dag.schedule.expr().is_none() {
            return Err(ServiceError::Invalid(format!(
                "DAG `{dag_id}` has no schedule: a backfill needs one to cut intervals"
            )));
        }
        let mut intervals = Vec::new();
        let mut start = dag.schedule.at_or_after(from);
        while let Some(s) = start.filter(|s| *s <= to) {
            let Some(end) = dag.schedule.next_after(s) else { break };
            intervals.push((s, end));
            if intervals.len() > MAX_INTERVALS {
                return Err(ServiceError::Invalid(format!(
                    "more than {MAX_INTERVALS} intervals from {from} to {to}: backfill a shorter range"
                )));
            }
            start = Some(end);
        }
        let (Some(first), Some(last)) = (intervals.first().map(|i| i.0), intervals.last().map(|i| i.0)) else {
            return Err(ServiceError::Invalid(format!(
                "no interval of {dag_id}'s schedule starts between {from} and {to}"
            )));
        };

        let existing = self.store.runs_between(dag_id, from, to).await?;
        let task_ids: Vec<String> = dag.tasks.iter().map(|t| t.id.clone()).collect();
        let mut report = BackfillReport {
            dag_id: dag_id.to_string(),
            intervals: intervals.len(),
            first,
            last,
            created: 0,
            rerun: 0,
            skipped: 0,
            run_ids: Vec::new(),
        };
        for (start, end) in &intervals {
            match existing.iter().find(|r| r.interval_start == Some(*start) || r.logical_date == *start) {
                Some(run) if request.rerun_failed && run.state == RunState::Failed => {
                    let action = Action::Clear {
                        dag_id: dag_id.to_string(),
                        run_ids: vec![run.run_id.clone()],
                        task_ids: vec![],
                        map_index: None,
                        downstream: false,
                        upstream: false,
                        only_failed: true,
                    };
                    self.perform(&action, &request.by).await?;
                    report.rerun += 1;
                    report.run_ids.push(run.run_id.clone());
                }
                Some(_) => report.skipped += 1,
                None => {
                    let run = NewRun {
                        run_id: RunType::Backfill.run_id(dag_id, *start),
                        dag_id: dag_id.to_string(),
                        version: row.active_version.clone(),
                        run_type: RunType::Backfill,
                        logical_date: *start,
                        interval: Some((*start, *end)),
                        conf: serde_json::Map::new(),
                        note: Some("backfill".into()),
                        triggered_by: request.by.name.clone(),
                        created_at: Utc::now(),
                        experiment: None,
                    };
                    let audit = request.by.audit("dag.backfill", dag_id, serde_json::json!({"run_id": run.run_id}));
                    if self.store.audited(&audit).create_run(&run, &task_ids).await? {
                        report.created += 1;
                        report.run_ids.push(run.run_id);
                    } else {
                        report.skipped += 1;
                    }
                }
            }
        }
        if report.created > 0 {
            self.store.notify(sandflow_store::Topic::Queued).await.ok();
        }
        Ok(report)
    }
}
