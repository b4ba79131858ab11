//! PostgreSQL administration on one database server: the template, tenant roles and databases.
//! Every function is idempotent (safe to run again after a crash at any point). DDL goes through
//! the simple query protocol (`raw_sql`): it cannot take bind parameters, and names are quoted by
//! [`crate::sql`].
//!
//! Isolation, as built here:
//! - a tenant database is created with `ALLOW_CONNECTIONS false` and opened only by the lockdown,
//!   after PUBLIC lost `CONNECT` and the tenant's own role got it, so there is never a moment
//!   another role can connect;
//! - a tenant role holds privileges in its own database only, granted to it directly (mirroring
//!   what the template grants the `tenancy_app` role, which has no members);
//! - every database and role the engine creates carries its tenant's `org_id` in a comment, and
//!   one tagged for another tenant (or not at all) is never adopted.

mod access;
mod archive;
mod backups;
mod databases;
mod inventory;
mod large_objects;
mod moves;
mod roles;
mod sessions;
mod spares;
mod template;

use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tenancy_core::{ErrorCode, OrgId, ServerId, SslMode};

use crate::config::ServerConfig;
use crate::error::ControlError;
use crate::sql::ddl;

use access::AppGrants;
pub use access::AppSession;
pub use archive::WalFacts;
pub use backups::{
    Contents, DumpSnapshot, replaced_name, replaced_tag, restoring_name, restoring_tag,
};
pub use databases::READ_ONLY_SETTING;
pub use inventory::{DatabaseFacts, DatabasePrivileges, Inventory, RoleFacts};
pub use moves::{
    MOVE_REPLICATION_PREFIX, ServerFacts, TableChecksums, moved_tag, replication_name,
    retained_name,
};
pub use roles::tier_settings;

/// NOLOGIN role the template grants its privileges to. It has no members: each tenant role gets
/// the same privileges in its own database only.
pub const APP_GROUP_ROLE: &str = "tenancy_app";

/// How every comment the engine tags a database or role with starts (a tenant's, a spare's, a
/// moved copy's).
pub(super) const TAG_PREFIX: &str = "tenancy:";

/// The comment every spare database of the warm pool carries until it is claimed.
pub const SPARE_TAG: &str = "tenancy:spare";

/// The SQLSTATE (one of our own) of a claim that finds the spare not whole (see
/// `ServerAdmin::adopt_spare`).
pub(super) const NOT_A_WHOLE_SPARE: &str = "TS001";

/// The SQLSTATE (one of our own) of an opening that finds the database tagged for someone else
/// (see `ServerAdmin::open_to`).
pub(super) const NOT_THE_TENANTS: &str = "TS002";

/// The refusal of a destructive step on something not tagged for the tenant: a conflict (the
/// operation fails for good, with this reason, and nothing is dropped).
pub(super) fn not_the_tenants(what: &str, org_id: &OrgId, found: Option<&str>) -> ControlError {
    ControlError::conflict(
        ErrorCode::InvalidState,
        format!(
            "{what} is {} rather than for tenant {org_id}: it is not the tenant's, and is left \
             as it is",
            match found {
                Some(found) => format!("tagged {found:?}"),
                None => "not tagged".to_owned(),
            }
        ),
    )
}

/// Says goodbye to the server off the caller's path: nothing waits for a verification's
/// connection to close.
pub(super) fn close_in_background(conn: PgConnection) {
    tokio::spawn(async move {
        let _ = conn.close().await;
    });
}

/// The comment every tenant database and role carries: `tenancy:org_id=<org_id>`.
pub fn tag(org_id: &OrgId) -> String {
    format!("tenancy:org_id={org_id}")
}

/// The organization a comment tags, if it is a tag.
pub fn tagged_org(comment: Option<&str>) -> Option<&str> {
    comment.and_then(|c| c.strip_prefix("tenancy:org_id="))
}

/// How long an admin or migration statement waits for a lock a tenant's session holds before
/// it fails (and its operation, or the tenant's migration, is tried again later).
pub const ADMIN_LOCK_TIMEOUT: &str = "5s";

/// Admin connections to one database server.
#[derive(Clone)]
pub struct ServerAdmin {
    id: ServerId,
    config: ServerConfig,
    pool: PgPool,
    /// A few connections of their own for read-only probes (usage, health), so callers polling
    /// them can never take the connections operations need.
    probes: PgPool,
    /// What each template version grants the app role (see [`Self::grant_app_privileges`]).
    app_grants: AppGrants,
    /// PBKDF2 rounds of the tenant roles' SCRAM verifiers (`[engine] scram_iterations`).
    scram_iterations: u32,
}

/// Connections of the probe pool, and how long a probe waits for one.
const PROBE_CONNECTIONS: u32 = 2;
const PROBE_WAIT: Duration = Duration::from_secs(2);

impl ServerAdmin {
    /// Builds the pool lazily: a server that is down at start-up does not stop the engine; its
    /// operations retry until it is back.
    pub fn new(config: &ServerConfig, max_connections: u32) -> Result<Self, ControlError> {
        if config.password.is_none() {
            return Err(ControlError::Config(format!(
                "server {}: no admin password (set password_env and export it)",
                config.id
            )));
        }
        let options = Self::options_for(config, &config.admin_database);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.clone());
        let probes = PgPoolOptions::new()
            .max_connections(PROBE_CONNECTIONS)
            .acquire_timeout(PROBE_WAIT)
            .connect_lazy_with(options);
        Ok(Self {
            id: config.id.clone(),
            config: config.clone(),
            pool,
            probes,
            app_grants: AppGrants::default(),
            scram_iterations: crate::secrets::DEFAULT_SCRAM_ITERATIONS,
        })
    }

    /// Tenant roles' SCRAM verifiers made by this admin take `iterations` rounds.
    pub fn with_scram_iterations(mut self, iterations: u32) -> Self {
        self.scram_iterations = iterations;
        self
    }

    fn options_for(config: &ServerConfig, dbname: &str) -> PgConnectOptions {
        let mut options = with_tls(PgConnectOptions::new(), config)
            .host(&config.host)
            .port(config.port)
            .username(&config.admin_user)
            .database(dbname)
            .application_name("tenancy-control")
            // A tenant's session holding a lock (`LOCK TABLE`, a transaction left open) makes
            // the engine's statement fail after this, to be retried, rather than wait forever.
            .options([("lock_timeout", ADMIN_LOCK_TIMEOUT)])
            // DDL carries SCRAM verifiers: keep it out of logs at every level.
            .disable_statement_logging();
        if let Some(password) = &config.password {
            options = options.password(password.expose_secret());
        }
        options
    }

    /// The TLS connector of this server's tokio-postgres connections (migrations).
    pub fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ControlError> {
        tenancy_pgtls::connector(self.config.sslmode(), self.config.ca_pem.as_deref())
            .map_err(|e| ControlError::Config(format!("server {}: {e}", self.id)))
    }

    /// Admin connection settings for one of this server's databases.
    pub fn options(&self, dbname: &str) -> PgConnectOptions {
        Self::options_for(&self.config, dbname)
    }

    pub fn id(&self) -> &ServerId {
        &self.id
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Closes the server's connections (its record is gone).
    pub async fn close(&self) {
        tokio::join!(self.pool.close(), self.probes.close());
    }

    fn err(&self) -> impl FnOnce(sqlx::Error) -> ControlError + '_ {
        ControlError::server(&self.id)
    }

    /// Connection settings for refinery (tokio-postgres) on one of this server's databases. The
    /// search path is `public` alone (with PostgreSQL's own catalog first, as always), so a
    /// migration never resolves a name through a schema someone else could write to.
    pub fn tokio_postgres_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.config.host)
            .port(self.config.port)
            .user(&self.config.admin_user)
            .dbname(dbname)
            .application_name("tenancy-migrate")
            .options(format!(
                "-c search_path=public -c lock_timeout={ADMIN_LOCK_TIMEOUT}"
            ))
            .ssl_mode(tenancy_pgtls::tokio_ssl_mode(self.config.sslmode()));
        if let Some(password) = &self.config.password {
            config.password(password.expose_secret());
        }
        config
    }

    async fn execute(&self, sql: String) -> Result<(), ControlError> {
        sqlx::raw_sql(ddl(sql))
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// Runs DDL inside one of this server's databases (not the maintenance database).
    async fn execute_in(&self, db: &str, sql: String) -> Result<(), ControlError> {
        let mut conn = PgConnection::connect_with(&self.options(db))
            .await
            .map_err(self.err())?;
        let result = sqlx::raw_sql(ddl(sql))
            .execute(&mut conn)
            .await
            .map_err(self.err());
        let _ = conn.close().await;
        result.map(drop)
    }
}

/// sqlx's TLS settings for the server: its sslmode, and its CA when it has one.
pub(super) fn with_tls(options: PgConnectOptions, config: &ServerConfig) -> PgConnectOptions {
    use sqlx::postgres::PgSslMode;
    let options = options.ssl_mode(match config.sslmode() {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    });
    match &config.ca_pem {
        Some(pem) => options.ssl_root_cert_from_pem(pem.as_bytes().to_vec()),
        None => options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mirrored grants leave out those of roles whose comment starts with the prefix: every tag
    /// the engine writes must.
    #[test]
    fn every_tag_starts_with_the_prefix() {
        let org: OrgId = "4711".parse().unwrap();
        for written in [SPARE_TAG.to_owned(), tag(&org), moved_tag(&org)] {
            assert!(written.starts_with(TAG_PREFIX), "{written}");
        }
    }
}
