//! `GET /metrics`: Prometheus text. The scheduler and worker of this process count through the
//! `metrics` facade ([`sandflow_scheduler::telemetry`]); this installs the process's recorder
//! (once: the first API started in a process owns it) and, at each scrape, reads from the store
//! what any process may have changed: the task instances waiting and running, by state.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sandflow_scheduler::telemetry::{self, Kind};

use crate::AppState;

/// Instances by state, read from the store at each scrape.
const INSTANCES: &str = "sandflow_task_instances";
const STATES: [&str; 5] = ["scheduled", "queued", "running", "up_for_retry", "up_for_reschedule"];

/// Seconds: from a millisecond to an hour (tries and delays alike).
const BUCKETS: [f64; 14] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 3600.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` if another recorder was installed.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /metrics shows only the store's figures");
                return None;
            }
            for (name, kind, help) in telemetry::DESCRIBED {
                match kind {
                    Kind::Counter => metrics::describe_counter!(*name, *help),
                    Kind::Histogram => metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help),
                }
            }
            metrics::describe_gauge!(INSTANCES, "Task instances waiting or running, by state (from the store)");
            Some(handle)
        })
        .as_ref()
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format: runs and tries by outcome, try duration and \
        scheduling delay histograms, fuel used, task instances by state", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = handle() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "another metrics recorder owns this process\n").into_response();
    };
    match state.service.store().unfinished_instance_counts().await {
        Ok(counts) => {
            for s in STATES {
                let n = counts.iter().find(|(state, _)| state == s).map_or(0, |(_, n)| *n);
                metrics::gauge!(INSTANCES, "state" => s).set(n as f64);
            }
        }
        Err(e) => tracing::warn!("/metrics: counting task instances: {e}"),
    }
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}
