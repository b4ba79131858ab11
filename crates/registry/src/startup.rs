//! The composition root: `Application::build` checks the settings, starts the engine and the
//! background tasks, assembles the state and the routes (`routes::router`), and binds (port 0 in tests); `run_until_stopped` serves
//! until SIGTERM or SIGINT, then stops taking work and lets in-flight steps finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use tenancy_control::{Config, Engine, Workers};
use tokio::net::TcpListener;
use tracing::info;

use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::auth::{Authenticator, Authenticators, DevToken};
use crate::settings::{Limits, Settings};
use crate::state::AppState;
use crate::zitadel::{self, Identity, org_sync as orgs};

pub struct Application {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: Limits,
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
        settings.validate()?;
        if let Some(token) = &settings.dev_token {
            authenticators.push(Arc::new(DevToken::new(token).map_err(anyhow::Error::msg)?));
        }
        if let Some(verifier) = zitadel::verifier(&settings)? {
            authenticators.push(Arc::new(verifier));
        }
        if authenticators.is_empty() {
            bail!(
                "no authentication configured: set TENANCY_ZITADEL_ISSUER and TENANCY_ZITADEL_PROJECT_ID, \
                 or TENANCY_DEV_TOKEN (loopback only)"
            );
        }
        let metrics = crate::metrics::handle();
        let engine = Engine::start(config).await.context("starting the engine")?;
        let identity =
            Identity::from_settings(&settings, engine.derived_secret("zitadel organization ids"))?;
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
        let tls = match (&settings.tls_cert_file, &settings.tls_key_file) {
            (Some(cert), Some(key)) => Some(crate::serve::tls_acceptor(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let console = crate::oidc::Console::new(
            &settings,
            &engine.config().console,
            listener.local_addr()?,
            tls.is_some(),
        )?;
        let state = AppState {
            console: Arc::new(console),
            engine: engine.clone(),
            authenticators: Authenticators(Arc::new(authenticators)),
            metrics,
            openapi: Arc::new(crate::routes::openapi::finish(
                openapi,
                engine.config().tiers.keys().map(|t| t.as_str()),
            )),
            webhook_keys: Arc::new(
                settings
                    .zitadel
                    .webhook_keys
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
        let api = if engine.config().console.enabled {
            api.merge(crate::console::routes(&state))
        } else {
            api
        };
        let router = crate::routes::router(api, state, &settings);
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
