//! `Application::build` binds (port 0 in tests) and starts the engine; `run_until_stopped`
//! serves until SIGTERM or SIGINT, then stops taking work and lets in-flight steps finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::http::{HeaderName, Request};
use metrics_exporter_prometheus::PrometheusHandle;
use tenancy_control::{Config, Engine, Workers};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::info;

use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, DevToken};
use crate::error::ApiError;
use crate::identity::{self, Identity};
use crate::orgs;
use crate::settings::Settings;

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub authenticators: Arc<Vec<Arc<dyn Authenticator>>>,
    pub metrics: PrometheusHandle,
    /// The OpenAPI document as served.
    pub openapi: Arc<serde_json::Value>,
    /// Signing keys that ZITADEL's organization events must be signed with.
    pub webhook_keys: Arc<Vec<SecretString>>,
    /// ZITADEL's management API, when a service account is configured.
    pub identity: Option<Arc<Identity>>,
    /// Organizations that are never tenants (the ignore list and the platform's own).
    pub ignored_orgs: Arc<std::collections::BTreeSet<String>>,
    /// The longest `wait` honoured.
    pub max_wait: std::time::Duration,
    /// Wakes the applier of recorded organization events.
    pub org_events: Arc<tokio::sync::Notify>,
}

impl AppState {
    /// The management API, or a clear refusal when no service account is configured.
    pub fn identity(&self) -> Result<&Identity, ApiError> {
        self.identity.as_deref().ok_or(ApiError::Refused {
            code: tenancy_core::ErrorCode::ZitadelNotConfigured,
            detail: "ZITADEL's management API is not configured: set TENANCY_ZITADEL_ISSUER and a \
                     service account (TENANCY_ZITADEL_SERVICE_ACCOUNT_PAT or _KEY_FILE)"
                .into(),
        })
    }
}

pub struct Application {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: crate::serve::Limits,
    router: Router,
    engine: Engine,
    workers: Workers,
    /// Stops the background tasks (the organization sync).
    background: CancellationToken,
}

impl Application {
    /// Loads the configuration, starts the engine (migrating the registry and preparing every
    /// server) and its workers, and binds the listen address.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let config = Config::load(settings.config.as_deref()).context("loading configuration")?;
        Self::build_with(settings, config, Vec::new()).await
    }

    /// As [`Application::build`] with a configuration in hand, and extra authenticators.
    pub async fn build_with(
        settings: Settings,
        config: Config,
        mut authenticators: Vec<Arc<dyn Authenticator>>,
    ) -> anyhow::Result<Self> {
        if settings.request_timeout <= settings.max_wait {
            bail!(
                "TENANCY_REQUEST_TIMEOUT ({:?}) must be longer than TENANCY_MAX_WAIT ({:?}), or \
                 every long wait would time out",
                settings.request_timeout,
                settings.max_wait
            );
        }
        if let Some(token) = &settings.dev_token {
            if !settings.listen.ip().is_loopback() {
                bail!(
                    "the development token is only allowed on a loopback listen address, not {}",
                    settings.listen
                );
            }
            if settings.zitadel_issuer.is_some() {
                bail!(
                    "the development token is refused when ZITADEL tokens are on \
                     (TENANCY_ZITADEL_ISSUER): unset TENANCY_DEV_TOKEN"
                );
            }
            authenticators.push(Arc::new(DevToken::new(token).map_err(anyhow::Error::msg)?));
        }
        if let Some(verifier) = identity::verifier(&settings)? {
            authenticators.push(Arc::new(verifier));
        }
        let identity = Identity::from_settings(&settings)?;
        if authenticators.is_empty() {
            bail!(
                "no authentication configured: set TENANCY_ZITADEL_ISSUER and TENANCY_ZITADEL_PROJECT_ID, \
                 or TENANCY_DEV_TOKEN (loopback only)"
            );
        }
        let metrics = crate::metrics::handle();
        let engine = Engine::start(config).await.context("starting the engine")?;
        let background = CancellationToken::new();
        if let Some(identity) = &identity {
            engine.set_admin_activator(identity.clone());
            orgs::spawn_sync(engine.clone(), identity.clone(), background.clone());
        }
        let org_events = Arc::new(tokio::sync::Notify::new());
        orgs::spawn_event_applier(
            engine.clone(),
            identity.clone(),
            org_events.clone(),
            background.clone(),
        );
        let workers = engine.run_workers();
        let (api, openapi) = crate::routes::api();
        let state = AppState {
            engine: engine.clone(),
            authenticators: Arc::new(authenticators),
            metrics,
            openapi: Arc::new(crate::routes::openapi::finish(
                openapi,
                engine.config().tiers.keys().map(|t| t.as_str()),
            )),
            webhook_keys: Arc::new(
                settings
                    .zitadel_webhook_keys
                    .iter()
                    .flat_map(|keys| {
                        keys.expose_secret()
                            .split(',')
                            .map(|k| SecretString::from(k.trim().to_owned()))
                            .collect::<Vec<_>>()
                    })
                    .filter(|k| !k.expose_secret().is_empty())
                    .collect(),
            ),
            identity,
            ignored_orgs: Arc::new(settings.ignored_orgs()),
            org_events,
            max_wait: settings.max_wait,
        };
        let request_id = HeaderName::from_static("x-request-id");
        let router = api
            .merge(crate::routes::system())
            .fallback(|uri: axum::http::Uri| async move { ApiError::NoRoute(uri.path().to_owned()) })
            .with_state(state)
            .layer(axum::middleware::from_fn_with_state(
                crate::serve::Shedding::new(&settings.limits()),
                crate::serve::shed,
            ))
            .layer(axum::middleware::from_fn(crate::metrics::track))
            // Enforced by the body extractors, so an oversized body is answered as problem+json.
            .layer(axum::extract::DefaultBodyLimit::max(settings.max_body))
            .layer(PropagateRequestIdLayer::new(request_id.clone()))
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id, subject = tracing::field::Empty)
            }))
            .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid));
        let tls = match (&settings.tls_cert_file, &settings.tls_key_file) {
            (Some(cert), Some(key)) => Some(crate::serve::tls_acceptor(cert, key)?),
            (None, None) => None,
            _ => bail!("TENANCY_TLS_CERT_FILE and TENANCY_TLS_KEY_FILE go together"),
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        crate::metrics::spawn_gauges(
            engine.clone(),
            settings.metrics_interval,
            background.clone(),
        );
        Ok(Self {
            listener,
            tls,
            limits: settings.limits(),
            router,
            engine,
            workers,
            background,
        })
    }

    /// Builds and serves on a task of the current runtime (tests, embedders); returns the base
    /// URL. The service stops with the runtime.
    pub async fn spawn(
        settings: Settings,
        config: Config,
        authenticators: Vec<Arc<dyn Authenticator>>,
    ) -> anyhow::Result<String> {
        let app = Self::build_with(settings, config, authenticators).await?;
        let base = app.base_url();
        tokio::spawn(app.run_until_stopped());
        Ok(base)
    }

    /// `https://` or `http://` and the bound address.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        info!(url = %self.base_url(), "registry listening");
        crate::serve::serve(
            self.listener,
            self.tls,
            self.router,
            self.limits,
            shutdown_signal(),
            Duration::from_secs(30),
        )
        .await?;
        self.background.cancel();
        info!("stopping workers: in-flight steps finish, the rest goes back to the queue");
        self.workers.shutdown().await;
        info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    info!("shutdown signal received");
}
