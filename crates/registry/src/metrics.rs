//! Prometheus metrics: the engine's (operations, steps, store queries) and the API's (request
//! latency), plus gauges read from the registry on a timer: tenants by status, operations by
//! kind and state, and the warm pool's spares by server and template version.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use tenancy_control::Engine;
use tenancy_core::{OperationKind, OperationState, Server, ServerId};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

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
            if metrics::set_global_recorder(recorder).is_ok() {
                tenancy_control::describe_metrics();
                describe();
            }
            handle
        })
        .clone()
}

/// What the service's own metrics mean (the engine describes its own).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer a request, by method, route template and status"
    );
    describe_counter!(
        "http_requests_shed_total",
        "Requests answered 503 overloaded at once (TENANCY_MAX_IN_FLIGHT reached)"
    );
    describe_counter!(
        "http_connections_refused_total",
        "Connections closed on accept (TENANCY_MAX_CONNECTIONS reached)"
    );
    describe_counter!(
        "http_tls_handshake_failures_total",
        "TLS handshakes that failed or timed out"
    );
    describe_gauge!("tenancy_tenants", "Tenants, by status");
    describe_gauge!(
        "tenancy_operations",
        "Operations, by kind and state (read from the registry on a timer)"
    );
    describe_gauge!(
        "tenancy_warm_pool_spares",
        "Spare databases ready to claim, by server and template version"
    );
    describe_counter!(
        "tenancy_org_events_total",
        "ZITADEL organization events, by outcome"
    );
    describe_counter!(
        "tenancy_org_sync_runs_total",
        "Organization sync runs, by outcome"
    );
    describe_counter!(
        "tenancy_org_sync_changes_total",
        "Changes the organization sync applied, by change"
    );
    describe_counter!(
        "tenancy_introspection_limited_total",
        "Token introspections refused by the rate limit"
    );
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

/// Refreshes the registry's gauges every `interval` until cancelled: on a timer, never per
/// scrape, so scraping costs no query. They are read from the registry, so every replica
/// reports the same counts, whichever of them did the work.
pub fn spawn_gauges(engine: Engine, interval: Duration, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut spare_series = SpareSeries::default();
        loop {
            if let Err(e) = refresh_gauges(&engine, &mut spare_series).await {
                tracing::warn!(error = %e, "could not refresh the registry's gauges");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = cancel.cancelled() => return,
            }
        }
    });
}

/// Every label set a gauge has shown is set on each round, to 0 when its count is gone (a
/// grouped count has no row for it): a series never keeps a stale value.
async fn refresh_gauges(
    engine: &Engine,
    spare_series: &mut SpareSeries,
) -> Result<(), tenancy_control::ControlError> {
    let counts = engine.tenants_by_status().await?;
    for status in tenancy_core::TenantStatus::ALL {
        let count = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("tenancy_tenants", "status" => status.as_str()).set(count as f64);
    }
    let counts = engine.operations_by_state().await?;
    for kind in OperationKind::ALL {
        for op_state in OperationState::ALL {
            let count = counts
                .iter()
                .find(|(k, s, _)| k == kind && s == op_state)
                .map_or(0, |(_, _, n)| *n);
            metrics::gauge!("tenancy_operations", "kind" => kind.as_str(), "state" => op_state.as_str())
                .set(count as f64);
        }
    }
    for status in engine.wal_status().await? {
        if !status.enabled {
            continue;
        }
        let server = status.server_id.to_string();
        if let Some(lag) = status.lag_bytes {
            metrics::gauge!("tenancy_wal_archive_lag_bytes", "server" => server.clone())
                .set(lag as f64);
        }
        let window = status.earliest.map_or(0, |earliest| {
            (status.latest.unwrap_or(earliest) - earliest).num_seconds()
        });
        metrics::gauge!("tenancy_wal_window_seconds", "server" => server.clone())
            .set(window as f64);
        if let Some(at) = status.last_base_backup_at {
            metrics::gauge!("tenancy_wal_last_base_backup_timestamp_seconds", "server" => server)
                .set(at.timestamp() as f64);
        }
    }
    for (server, version, spares) in spare_series.update(&engine.servers().await?) {
        metrics::gauge!("tenancy_warm_pool_spares", "server" => server.to_string(),
            "template_version" => version.to_string())
        .set(spares as f64);
    }
    Ok(())
}

/// The template version each server's spares were last reported at. Only spares at a server's
/// current version can be claimed: when the version moves on (or the server goes), the old
/// series reads 0 once more, then is no longer set.
#[derive(Default)]
struct SpareSeries(HashMap<ServerId, i32>);

impl SpareSeries {
    /// The `(server, template version, spares)` values to set for these servers.
    fn update(&mut self, servers: &[Server]) -> Vec<(ServerId, i32, i64)> {
        let mut values = Vec::new();
        let mut current = HashMap::new();
        for server in servers {
            if let Some(version) = server.template_version {
                values.push((server.id.clone(), version, server.spares));
                current.insert(server.id.clone(), version);
            }
        }
        for (server, version) in std::mem::replace(&mut self.0, current) {
            if self.0.get(&server) != Some(&version) {
                values.push((server, version, 0));
            }
        }
        values
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn render(State(state): State<AppState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_core::{ServerState, SslMode};

    fn server(id: &str, template_version: Option<i32>, spares: i64) -> Server {
        Server {
            id: id.parse().unwrap(),
            region: "eu".parse().unwrap(),
            host: "db".into(),
            port: 5432,
            capacity: 100,
            state: ServerState::Active,
            template_version,
            tenants: 0,
            spares,
            sslmode: SslMode::VerifyFull,
        }
    }

    fn values(series: &mut SpareSeries, servers: &[Server]) -> Vec<(String, i32, i64)> {
        let mut values: Vec<_> = series
            .update(servers)
            .into_iter()
            .map(|(server, version, n)| (server.to_string(), version, n))
            .collect();
        values.sort();
        values
    }

    #[test]
    fn a_spare_series_reads_zero_once_its_version_or_server_is_gone() {
        let mut series = SpareSeries::default();
        let both = [server("pg-a", Some(4), 3), server("pg-b", Some(4), 1)];
        assert_eq!(
            values(&mut series, &both),
            [("pg-a".into(), 4, 3), ("pg-b".into(), 4, 1)]
        );
        // pg-a's template moved on (its version 4 spares can no longer be claimed); pg-b went.
        let moved = [server("pg-a", Some(5), 0)];
        assert_eq!(
            values(&mut series, &moved),
            [
                ("pg-a".into(), 4, 0),
                ("pg-a".into(), 5, 0),
                ("pg-b".into(), 4, 0)
            ]
        );
        // Once zeroed, a series is no longer set; a server without a template yet has none.
        let later = [server("pg-a", Some(5), 2), server("pg-c", None, 0)];
        assert_eq!(values(&mut series, &later), [("pg-a".into(), 5, 2)]);
    }
}
