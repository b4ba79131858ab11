//! The template database on a server: created, closed to PUBLIC and migrated (`prepare`), and
//! any database's migrations.

use sqlx::{Connection, PgConnection};
use tenancy_core::DbName;
use tracing::{info, instrument};

use super::{APP_GROUP_ROLE, ServerAdmin};
use crate::error::ControlError;
use crate::migrate;
use crate::sql::{ddl, ident};

impl ServerAdmin {
    /// Makes the server ready for tenants: the app role, `tenant_template` created, closed to
    /// PUBLIC and migrated to `target` (the latest when `None`); also how a fleet migration moves
    /// templates. An advisory lock keeps concurrent engines from preparing the same server at
    /// once. Returns the template's version.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn prepare(&self, target: Option<i32>) -> Result<i32, ControlError> {
        let mut conn = PgConnection::connect_with(&self.options(&self.config.admin_database))
            .await
            .map_err(self.err())?;
        // Another engine preparing the server holds the lock as long as its migrations take.
        sqlx::raw_sql("SET lock_timeout = 0; SELECT pg_advisory_lock(hashtext('tenancy.prepare'))")
            .execute(&mut conn)
            .await
            .map_err(self.err())?;
        let result = self.prepare_locked(&mut conn, target).await;
        // Closing the session releases the advisory lock, also when preparing failed.
        let _ = conn.close().await;
        result
    }

    pub(super) async fn prepare_locked(
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
        // Tenant roles may connect to their own database only: PUBLIC loses CONNECT on every
        // database of the server that is not a tenant's (the maintenance databases, template1,
        // the template, the registry's when it lives here).
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database
             WHERE datallowconn AND (datname NOT LIKE 'tenant\\_%' OR datname = 'tenant_template')",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(self.err())?;
        let revokes: String = others
            .iter()
            .map(|db| {
                format!(
                    "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC;\n",
                    ident(db)
                )
            })
            .collect();
        sqlx::raw_sql(ddl(revokes))
            .execute(&mut *conn)
            .await
            .map_err(self.err())?;
        // Older PostgreSQL versions let PUBLIC create in schema public; clones inherit the
        // template's schema privileges.
        self.execute_in(
            template.as_str(),
            format!(
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
                 ALTER SCHEMA public OWNER TO {};",
                ident(&self.config.admin_user)
            ),
        )
        .await?;
        self.migrate(template.as_str(), target).await
    }

    /// Migrates a database of this server (the template or a tenant's) to `target` (the latest
    /// when `None`); returns its version afterwards.
    pub async fn migrate(&self, db: &str, target: Option<i32>) -> Result<i32, ControlError> {
        migrate::migrate_schema(&self.tokio_postgres_config(db), self.tls()?, target).await
    }
}
