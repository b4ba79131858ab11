//! PostgreSQL administration on one database server: the template, tenant roles and databases.
//! Every function is idempotent (safe to run again after a crash at any point). DDL goes through
//! the simple query protocol (`raw_sql`): it cannot take bind parameters, and names are quoted by
//! [`crate::sql`].

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tenancy_core::{DbName, RoleName, ServerId};
use tracing::{info, instrument};

use crate::config::{ServerConfig, TierLimits};
use crate::error::ControlError;
use crate::migrate;
use crate::secrets::scram_verifier;
use crate::sql::{ddl, ident, literal};

/// NOLOGIN group role that holds the template's table privileges; every tenant role is a member.
pub const APP_GROUP_ROLE: &str = "tenancy_app";

/// Admin connections to one database server.
#[derive(Clone)]
pub struct ServerAdmin {
    id: ServerId,
    config: ServerConfig,
    pool: PgPool,
}

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
            .connect_lazy_with(options);
        Ok(Self {
            id: config.id.clone(),
            config: config.clone(),
            pool,
        })
    }

    fn options_for(config: &ServerConfig, dbname: &str) -> PgConnectOptions {
        let mut options = PgConnectOptions::new()
            .host(&config.host)
            .port(config.port)
            .username(&config.admin_user)
            .database(dbname)
            .application_name("tenancy-control")
            // DDL carries SCRAM verifiers: keep it out of logs at every level.
            .disable_statement_logging();
        if let Some(password) = &config.password {
            options = options.password(password.expose_secret());
        }
        options
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

    fn err(&self) -> impl FnOnce(sqlx::Error) -> ControlError + '_ {
        ControlError::server(&self.id)
    }

    /// Connection settings for refinery (tokio-postgres) on one of this server's databases.
    pub fn tokio_postgres_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.config.host)
            .port(self.config.port)
            .user(&self.config.admin_user)
            .dbname(dbname)
            .application_name("tenancy-migrate");
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

    /// Makes the server ready for tenants: the group role, and `tenant_template` created and
    /// migrated to `target` (the latest when `None`); also how a fleet migration moves templates. An advisory lock keeps concurrent engines from migrating
    /// the same template at once. Returns the template's version.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn prepare(&self, target: Option<i32>) -> Result<i32, ControlError> {
        let mut conn = PgConnection::connect_with(&Self::options_for(
            &self.config,
            &self.config.admin_database,
        ))
        .await
        .map_err(self.err())?;
        sqlx::query("SELECT pg_advisory_lock(hashtext('tenancy.prepare'))")
            .execute(&mut conn)
            .await
            .map_err(self.err())?;
        let result = self.prepare_locked(&mut conn, target).await;
        // Closing the session releases the advisory lock, also when preparing failed.
        let _ = conn.close().await;
        result
    }

    async fn prepare_locked(
        &self,
        conn: &mut PgConnection,
        target: Option<i32>,
    ) -> Result<i32, ControlError> {
        let group_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(APP_GROUP_ROLE)
                .fetch_one(&mut *conn)
                .await
                .map_err(self.err())?;
        if !group_exists {
            sqlx::raw_sql(ddl(format!(
                "CREATE ROLE {} NOLOGIN",
                ident(APP_GROUP_ROLE)
            )))
            .execute(&mut *conn)
            .await
            .map_err(self.err())?;
        }
        let template = DbName::template();
        if !self.database_exists(&template).await? {
            info!("creating the template database");
            sqlx::raw_sql(ddl(format!("CREATE DATABASE {}", ident(template.as_str()))))
                .execute(&mut *conn)
                .await
                .map_err(self.err())?;
        }
        // Tenant roles may connect to their own database only: not the template, not the
        // maintenance database.
        sqlx::raw_sql(ddl(format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {t} FROM PUBLIC;
             REVOKE CONNECT, TEMPORARY ON DATABASE {m} FROM PUBLIC;",
            t = ident(template.as_str()),
            m = ident(&self.config.admin_database),
        )))
        .execute(&mut *conn)
        .await
        .map_err(self.err())?;
        let version =
            migrate::migrate_schema(&self.tokio_postgres_config(template.as_str()), target).await?;
        Ok(version)
    }

    pub async fn database_exists(&self, db: &DbName) -> Result<bool, ControlError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(db.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())
    }

    pub async fn role_exists(&self, role: &RoleName) -> Result<bool, ControlError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())
    }

    /// Creates the tenant's login role, or brings an existing one back to the wanted attributes:
    /// no superuser, no CREATEDB or CREATEROLE, the tier's connection limit and statement
    /// timeout, member of the app group, password set from its SCRAM verifier.
    #[instrument(skip(self, password), fields(server_id = %self.id))]
    pub async fn ensure_role(
        &self,
        role: &RoleName,
        password: &SecretString,
        limits: TierLimits,
    ) -> Result<(), ControlError> {
        let r = ident(role.as_str());
        let attributes = format!(
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT CONNECTION LIMIT {} PASSWORD {}",
            limits.connection_limit,
            literal(&scram_verifier(password)),
        );
        let create = if self.role_exists(role).await? {
            format!("ALTER ROLE {r} WITH {attributes};")
        } else {
            format!("CREATE ROLE {r} WITH {attributes};")
        };
        self.execute(format!(
            "{create}
             GRANT {group} TO {r};
             ALTER ROLE {r} SET statement_timeout = {timeout};",
            group = ident(APP_GROUP_ROLE),
            timeout = limits.statement_timeout.as_millis(),
        ))
        .await
    }

    /// Applies a tier's limits to an existing role without touching its login state.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn apply_limits(
        &self,
        role: &RoleName,
        limits: TierLimits,
    ) -> Result<(), ControlError> {
        self.execute(format!(
            "ALTER ROLE {r} CONNECTION LIMIT {limit};
             ALTER ROLE {r} SET statement_timeout = {timeout};",
            r = ident(role.as_str()),
            limit = limits.connection_limit,
            timeout = limits.statement_timeout.as_millis(),
        ))
        .await
    }

    /// Size in bytes of a database and the sessions connected to it.
    pub async fn usage(&self, db: &DbName) -> Result<(i64, i64), ControlError> {
        sqlx::query_as(
            "SELECT pg_database_size(datname), (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname)
             FROM pg_database d WHERE datname = $1",
        )
        .bind(db.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err())?
        .ok_or_else(|| ControlError::NotFound { what: format!("database {db} on server {}", self.id) })
    }

    /// Clones the template into `db` unless it exists. `CREATE DATABASE` cannot run in a
    /// transaction and is atomic: after a crash the database either exists whole or not at all.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn create_database(&self, db: &DbName) -> Result<(), ControlError> {
        if self.database_exists(db).await? {
            return Ok(());
        }
        let result = self
            .execute(format!(
                "CREATE DATABASE {} TEMPLATE {}",
                ident(db.as_str()),
                ident(DbName::template().as_str())
            ))
            .await;
        match result {
            // Another worker (one whose lease we took over) created it in the meantime.
            Err(ControlError::Server { source, .. })
                if crate::error::sqlstate(&source).as_deref() == Some("42P04") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Only the tenant role may connect to its database; the database stays owned by the admin,
    /// so the tenant cannot drop it or change its settings.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn lockdown(&self, db: &DbName, role: &RoleName) -> Result<(), ControlError> {
        self.execute(format!(
            "REVOKE ALL ON DATABASE {d} FROM PUBLIC;
             GRANT CONNECT, TEMPORARY ON DATABASE {d} TO {r};",
            d = ident(db.as_str()),
            r = ident(role.as_str()),
        ))
        .await
    }

    /// Refuses new connections of the tenant role and ends its open sessions. Missing role or
    /// database (a tenant that never finished provisioning) is not an error.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn block(&self, db: &DbName, role: &RoleName) -> Result<(), ControlError> {
        if self.role_exists(role).await? {
            self.execute(format!("ALTER ROLE {} NOLOGIN", ident(role.as_str())))
                .await?;
            if self.database_exists(db).await? {
                self.execute(format!(
                    "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM {}",
                    ident(db.as_str()),
                    ident(role.as_str())
                ))
                .await?;
            }
        }
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND usename = $2 AND pid <> pg_backend_pid()",
        )
        .bind(db.as_str())
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    /// Undoes [`Self::block`].
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn unblock(&self, db: &DbName, role: &RoleName) -> Result<(), ControlError> {
        self.execute(format!(
            "ALTER ROLE {r} LOGIN;
             GRANT CONNECT, TEMPORARY ON DATABASE {d} TO {r};",
            d = ident(db.as_str()),
            r = ident(role.as_str()),
        ))
        .await
    }

    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn drop_database(&self, db: &DbName) -> Result<(), ControlError> {
        self.execute(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(db.as_str())
        ))
        .await
    }

    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn drop_role(&self, role: &RoleName) -> Result<(), ControlError> {
        self.execute(format!("DROP ROLE IF EXISTS {}", ident(role.as_str())))
            .await
    }

    /// Connects to the tenant database as the tenant role (proving it can) and reads the schema
    /// version.
    #[instrument(skip(self, password), fields(server_id = %self.id))]
    pub async fn verify_tenant(
        &self,
        db: &DbName,
        role: &RoleName,
        password: &SecretString,
    ) -> Result<Option<i32>, ControlError> {
        let options = self
            .tenant_options(db, role, password)
            .application_name("tenancy-verify");
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(self.err())?;
        let version: Option<i32> =
            sqlx::query_scalar("SELECT max(version) FROM refinery_schema_history")
                .fetch_one(&mut conn)
                .await
                .map_err(self.err())?;
        let _ = conn.close().await;
        Ok(version)
    }

    /// Connection settings for a tenant role on its database.
    pub fn tenant_options(
        &self,
        db: &DbName,
        role: &RoleName,
        password: &SecretString,
    ) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.config.host)
            .port(self.config.port)
            .username(role.as_str())
            .password(password.expose_secret())
            .database(db.as_str())
    }

    /// Databases and roles in the control plane's namespace (`tenant_*`, the template excluded).
    pub async fn inventory(&self) -> Result<(Vec<String>, Vec<String>), ControlError> {
        let databases: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'tenant\\_%' AND datname <> 'tenant_template' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        let roles: Vec<String> = sqlx::query_scalar(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenant\\_%' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        Ok((databases, roles))
    }
}
