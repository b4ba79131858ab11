//! Prometheus metrics: the engine's (operations, steps, store queries) and the API's (request
//! latency), plus tenants by status and operations by kind and state, refreshed on a timer.

use std::sync::OnceLock;
use std::time::Instant;

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use tenancy_control::Engine;
use tokio_util::sync::CancellationToken;

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

/// Records `http_request_duration_seconds` by method, route template and status. Labels come
/// from fixed sets (the route template, never the path; a method outside the standard ones is
/// `other`), so no request can grow `/metrics`.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
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

/// Refreshes the registry's gauges (tenants by status, operations by kind and state) every
/// `interval` until cancelled: on a timer, never per scrape, so scraping costs no query.
pub fn spawn_gauges(engine: Engine, interval: Duration, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = refresh_gauges(&engine).await {
                tracing::warn!(error = %e, "could not refresh the registry's gauges");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = cancel.cancelled() => return,
            }
        }
    });
}

async fn refresh_gauges(engine: &Engine) -> Result<(), tenancy_control::ControlError> {
    let counts = engine.tenants_by_status().await?;
    for status in tenancy_core::TenantStatus::ALL {
        let count = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("tenancy_tenants", "status" => status.as_str()).set(count as f64);
    }
    for (kind, op_state, count) in engine.operations_by_state().await? {
        metrics::gauge!("tenancy_operations", "kind" => kind.as_str(), "state" => op_state.as_str())
            .set(count as f64);
    }
    Ok(())
}

/// `GET /metrics`: Prometheus text format.
pub async fn render(State(state): State<AppState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
