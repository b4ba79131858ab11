//! Refinery migrations: the registry database's (`registry-migrations/`) and the template's
//! (`tenant-template/`), both compiled into the binary. Refinery runs each migration in its own
//! transaction, so a failed migration leaves a database at its previous version.

use refinery::Target;
use tokio_postgres::NoTls;
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
    work: impl AsyncFnOnce(&mut tokio_postgres::Client) -> Result<T, ControlError>,
) -> Result<T, ControlError> {
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| ControlError::Migration(format!("connecting: {e}")))?;
    let task = tokio::spawn(connection);
    let result = work(&mut client).await;
    drop(client);
    let _ = task.await;
    result
}

#[instrument(skip_all)]
pub async fn migrate_registry(url: &str) -> Result<(), ControlError> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| ControlError::Config(format!("registry url: {e}")))?;
    with_client(&config, async |client| {
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
    target: Option<i32>,
) -> Result<i32, ControlError> {
    with_client(config, async |client| {
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
