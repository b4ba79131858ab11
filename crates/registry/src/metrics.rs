//! Prometheus metrics: the engine's (operations, steps) and the API's (request latency), plus
//! tenants by status and operations by kind and state, read from the registry at scrape time.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::ApiResult;
use crate::startup::AppState;

/// The process-wide recorder (the `metrics` facade is global by design); installed once.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ],
                )
                .expect("valid buckets")
                .build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Records `http_request_duration_seconds` by method, route template and status (never the
/// org id: the route template keeps label cardinality fixed).
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: Prometheus text format.
pub async fn render(State(state): State<AppState>) -> ApiResult<Response> {
    let counts = state.engine.tenants_by_status().await?;
    for status in tenancy_core::TenantStatus::ALL {
        let count = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("tenancy_tenants", "status" => status.as_str()).set(count as f64);
    }
    for (kind, op_state, count) in state.engine.operations_by_state().await? {
        metrics::gauge!("tenancy_operations", "kind" => kind.as_str(), "state" => op_state.as_str())
            .set(count as f64);
    }
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response())
}
