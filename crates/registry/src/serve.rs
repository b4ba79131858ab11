//! The HTTP server: an accept loop on hyper-util (axum's `serve` cannot set these) with a cap on
//! open connections and a header-read timeout, so slow or numerous clients cannot hold the
//! service; TLS (rustls) when configured; load shedding and a request timeout as middleware; a
//! graceful drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tenancy_core::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::error::ApiError;
use crate::settings::Limits;

/// A TLS acceptor for a certificate chain and its key (PEM files), offering HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(cert_file: &Path, key_file: &Path) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context;
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading the certificate {}", cert_file.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no certificate",
        cert_file.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the private key {}", key_file.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the certificate and key do not make a TLS identity")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` (over TLS when `tls` is set) until `shutdown` completes, then
/// lets open requests finish (for at most `drain`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
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
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
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
        let (router, builder, watcher, tls) = (
            router.clone(),
            builder.clone(),
            graceful.watcher(),
            tls.clone(),
        );
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, router, &builder, watcher).await,
                // The handshake gets the header-read timeout: a client that opens a connection
                // and says nothing holds it no longer over TLS than without.
                Some(tls) => {
                    match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, router, &builder, watcher).await;
                        }
                        Ok(Err(e)) => {
                            metrics::counter!("http_tls_handshake_failures_total").increment(1);
                            tracing::debug!(error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!("http_tls_handshake_failures_total").increment(1);
                        }
                    }
                }
            }
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

/// Serves one connection; its requests carry the client's address (`ConnectInfo`), which
/// per-client limits key on.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = tower::ServiceBuilder::new()
        .layer(axum::Extension(ConnectInfo(peer)))
        .service(router);
    let service = TowerToHyperService::new(router);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let _ = watcher.watch(connection.into_owned()).await;
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
