//! The HTTP server: an accept loop on hyper-util (axum's `serve` cannot set these) with a cap on
//! open connections and a header-read timeout, so slow or numerous clients cannot hold the
//! service; load shedding and a request timeout as middleware; a graceful drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tenancy_core::ErrorCode;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::error::ApiError;

/// What the server accepts at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Requests handled at once, long polls of the change feed aside; more are answered
    /// 503 `overloaded` at once.
    pub max_in_flight: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a request may take in all (longer than the longest `wait` a route allows).
    pub request_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open requests finish
/// (for at most `drain`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    info!("draining open connections");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => warn!("connections still open after {drain:?}; closing"),
    }
    Ok(())
}

/// Requests in flight beyond the limit are answered 503 at once (long polls of the change feed
/// have their own budget: each router process holds one).
#[derive(Clone)]
pub struct Shedding {
    pub requests: Arc<Semaphore>,
    pub long_polls: Arc<Semaphore>,
    pub timeout: Duration,
}

impl Shedding {
    pub fn new(limits: &Limits) -> Self {
        Self {
            requests: Arc::new(Semaphore::new(limits.max_in_flight)),
            long_polls: Arc::new(Semaphore::new(limits.max_connections)),
            timeout: limits.request_timeout,
        }
    }
}

/// Load shedding and the request timeout.
pub async fn shed(State(shedding): State<Shedding>, request: Request, next: Next) -> Response {
    let budget = if request.uri().path() == "/v1/changes" {
        &shedding.long_polls
    } else {
        &shedding.requests
    };
    let Ok(_permit) = budget.clone().try_acquire_owned() else {
        metrics::counter!("http_requests_shed_total").increment(1);
        return ApiError::Refused {
            code: ErrorCode::Overloaded,
            detail: "too many requests in flight".into(),
        }
        .into_response();
    };
    match tokio::time::timeout(shedding.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Refused {
            code: ErrorCode::Timeout,
            detail: format!("the request took longer than {:?}", shedding.timeout),
        }
        .into_response(),
    }
}
