//! Sessions in a tenant database: blocked, ended, and the tenant's own login verified.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tenancy_core::{DbName, RoleName};
use tracing::instrument;

use super::{ServerAdmin, close_in_background, with_tls};
use crate::error::ControlError;
use crate::sql::ident;

impl ServerAdmin {
    /// Ends the sessions in the database of anyone but the role and the admin.
    pub async fn end_other_sessions(
        &self,
        db: &DbName,
        role: &RoleName,
    ) -> Result<(), ControlError> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND usename NOT IN ($2, current_user) AND pid <> pg_backend_pid()",
        )
        .bind(db.as_str())
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    /// Refuses new connections of the tenant role and ends its open sessions, returning once none
    /// is left (see [`Self::end_sessions`]). Missing role or database (a tenant that never
    /// finished provisioning) is not an error.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn block(&self, db: &DbName, role: &RoleName) -> Result<(), ControlError> {
        if self.role_tag(role).await?.is_some() {
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
        self.end_sessions(db, role).await.map(drop)
    }

    /// Ends the role's sessions in the database and waits until none is left, for a role that
    /// may no longer connect. Signalling a session does not end it at once: it may still finish
    /// a commit, and one that logged in just before the refusal shows a moment later. A move's
    /// cutover reads the source's WAL position next and must see neither. Done when two rounds
    /// in a row, 10 ms apart, find no session; returns how many sessions it signalled.
    pub async fn end_sessions(&self, db: &DbName, role: &RoleName) -> Result<i64, ControlError> {
        const WAIT: Duration = Duration::from_secs(10);
        let started = std::time::Instant::now();
        let (mut quiet_rounds, mut ended) = (0, 0);
        loop {
            let signalled = self.terminate_sessions(db, role).await?;
            ended += signalled;
            quiet_rounds = if signalled == 0 { quiet_rounds + 1 } else { 0 };
            if quiet_rounds == 2 {
                return Ok(ended);
            }
            if started.elapsed() > WAIT {
                return Err(ControlError::Timeout(WAIT));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Signals the end to the role's sessions in the database; returns how many it signalled.
    pub(super) async fn terminate_sessions(
        &self,
        db: &DbName,
        role: &RoleName,
    ) -> Result<i64, ControlError> {
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND usename = $2 AND pid <> pg_backend_pid()",
        )
        .bind(db.as_str())
        .bind(role.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(self.err())
    }

    /// Undoes [`Self::block`], but for `TEMPORARY` (see [`Self::set_temp_tables`]).
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn unblock(&self, db: &DbName, role: &RoleName) -> Result<(), ControlError> {
        self.execute(format!(
            "ALTER ROLE {r} LOGIN;
             GRANT CONNECT ON DATABASE {d} TO {r};
             ALTER DATABASE {d} ALLOW_CONNECTIONS true;",
            d = ident(db.as_str()),
            r = ident(role.as_str()),
        ))
        .await
    }

    /// Connects to the tenant database as the tenant role, proving it can, and nothing more.
    #[instrument(skip(self, password), fields(server_id = %self.id))]
    pub async fn verify_login(
        &self,
        db: &DbName,
        role: &RoleName,
        password: &SecretString,
    ) -> Result<(), ControlError> {
        close_in_background(self.tenant_login(db, role, password).await?);
        Ok(())
    }

    pub(super) async fn tenant_login(
        &self,
        db: &DbName,
        role: &RoleName,
        password: &SecretString,
    ) -> Result<PgConnection, ControlError> {
        let options = self
            .tenant_options(db, role, password)
            .application_name("tenancy-verify");
        PgConnection::connect_with(&options)
            .await
            .map_err(self.err())
    }

    /// Connection settings for a tenant role on its database.
    pub fn tenant_options(
        &self,
        db: &DbName,
        role: &RoleName,
        password: &SecretString,
    ) -> PgConnectOptions {
        with_tls(PgConnectOptions::new(), &self.config)
            .host(&self.config.host)
            .port(self.config.port)
            .username(role.as_str())
            .password(password.expose_secret())
            .database(db.as_str())
    }
}
