//! Refinery migrations: the registry database's (`registry-migrations/`) and the template's
//! (`tenant-template/`), both compiled into the binary. The registry's run each in its own
//! transaction; a template or tenant database's pending migrations run in one (see
//! [`migrate_schema`]). Either way a failed migration leaves a database at a version it had.

use refinery::Target;
use tenancy_core::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{info, instrument};

use crate::error::ControlError;

mod registry {
    refinery::embed_migrations!("../../registry-migrations");
}

mod template {
    refinery::embed_migrations!("../../tenant-template");
}

/// The newest version in `registry-migrations/`.
pub fn latest_registry_version() -> i32 {
    registry::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// The newest version in `tenant-template/`.
pub fn latest_template_version() -> i32 {
    template::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Connects with tokio-postgres (refinery's driver) and keeps the connection task until the
/// client is dropped, so the backend is gone once this returns.
async fn with_client<T>(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    work: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, ControlError>,
) -> Result<T, ControlError> {
    // Refinery creates its history table with IF NOT EXISTS on every run: PostgreSQL's notice
    // that it exists already is not news worth a log line at each start.
    // Added to the caller's options (a search path, a lock timeout), never in their place.
    let mut config = config.clone();
    let options = format!(
        "{} -c client_min_messages=warning",
        config.get_options().unwrap_or_default()
    );
    config.options(options.trim_start());
    let (mut client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| ControlError::Migration(format!("connecting: {e}")))?;
    let task = tokio::spawn(connection);
    let result = work(&mut client).await;
    drop(client);
    let _ = task.await;
    result
}

/// The registry URL as tokio-postgres settings and a TLS connector. `sslmode` (any of libpq's
/// four) and `sslrootcert` (a CA file) are read here: tokio-postgres knows neither fully.
fn registry_connection(
    url: &str,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), ControlError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut sslmode, mut rootcert) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", value)) => sslmode = Some(value.to_owned()),
            Some(("sslrootcert", value)) => rootcert = Some(value.to_owned()),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| ControlError::Config(format!("registry url: {e}")))?;
    let mode = match sslmode.as_deref() {
        None | Some("prefer" | "allow" | "disable") => SslMode::Disable,
        Some(mode) => mode
            .parse()
            .map_err(|e| ControlError::Config(format!("registry url: {e}")))?,
    };
    let ca = rootcert
        .map(|path| {
            std::fs::read_to_string(&path)
                .map_err(|e| ControlError::Config(format!("registry url sslrootcert {path}: {e}")))
        })
        .transpose()?;
    config.ssl_mode(tenancy_pgtls::tokio_ssl_mode(mode));
    let tls = tenancy_pgtls::connector(mode, ca.as_deref())
        .map_err(|e| ControlError::Config(format!("registry url: {e}")))?;
    Ok((config, tls))
}

#[instrument(skip_all)]
pub async fn migrate_registry(url: &str) -> Result<(), ControlError> {
    let (config, tls) = registry_connection(url)?;
    with_client(&config, tls, async |client| {
        let report = registry::migrations::runner()
            .run_async(client)
            .await
            .map_err(|e| ControlError::Migration(format!("registry: {}", chain(&e))))?;
        for m in report.applied_migrations() {
            info!(
                version = m.version(),
                name = m.name(),
                "applied registry migration"
            );
        }
        Ok(())
    })
    .await
}

/// Migrates a template or tenant database to `target` (the latest when `None`), all pending
/// migrations in one transaction: a failure leaves the database exactly at its previous version.
/// Returns the version afterwards.
#[instrument(skip_all, fields(dbname = config.get_dbname()))]
pub async fn migrate_schema(
    config: &tokio_postgres::Config,
    tls: MakeRustlsConnect,
    target: Option<i32>,
) -> Result<i32, ControlError> {
    with_client(config, tls, async |client| {
        let mut runner = template::migrations::runner().set_grouped(true);
        if let Some(version) = target {
            runner = runner.set_target(Target::Version(version));
        }
        let report = runner
            .run_async(client)
            .await
            .map_err(|e| ControlError::Migration(chain(&e)))?;
        for m in report.applied_migrations() {
            info!(
                version = m.version(),
                name = m.name(),
                "applied template migration"
            );
        }
        let version: Option<i32> = client
            .query_one("SELECT max(version) FROM refinery_schema_history", &[])
            .await
            .map_err(|e| ControlError::Migration(chain(&e)))?
            .get(0);
        Ok(version.unwrap_or(0))
    })
    .await
}

/// An error with its causes (refinery's own message is only "error applying migrations"; the
/// PostgreSQL error that matters is further down the chain).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
