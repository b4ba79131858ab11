//! Tenant databases: made from the template, probed, sized, made read-only, dropped.

use tenancy_core::{DbName, ErrorCode, OrgId, RoleName};
use tracing::instrument;

use super::{ServerAdmin, not_the_tenants, tag, tagged_org};
use crate::error::ControlError;
use crate::sql::{ident, literal};

impl ServerAdmin {
    pub async fn database_exists(&self, db: &DbName) -> Result<bool, ControlError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(db.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())
    }

    /// Whether a database exists, asked on the probe pool.
    pub async fn probe_database(&self, db: &DbName) -> Result<bool, ControlError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(db.as_str())
            .fetch_one(&self.probes)
            .await
            .map_err(self.err())
    }

    /// Size in bytes of a database and the sessions connected to it, asked on the probe pool.
    pub async fn usage(&self, db: &DbName) -> Result<(i64, i64), ControlError> {
        sqlx::query_as(
            "SELECT pg_database_size(datname), (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname)
             FROM pg_database d WHERE datname = $1",
        )
        .bind(db.as_str())
        .fetch_optional(&self.probes)
        .await
        .map_err(self.err())?
        .ok_or_else(|| ControlError::NotFound { what: format!("database {db} on server {}", self.id) })
    }

    /// Size and open sessions of every tenant database on the server, in one query (the usage
    /// sampler's round asks each server once, whatever its number of tenants).
    pub async fn sample_usage(&self) -> Result<Vec<(String, i64, i64)>, ControlError> {
        sqlx::query_as(
            "SELECT d.datname::text, pg_database_size(d.oid), coalesce(a.sessions, 0)
             FROM pg_database d
             LEFT JOIN (SELECT datid, count(*) AS sessions FROM pg_stat_activity GROUP BY datid) a
                 ON a.datid = d.oid
             WHERE d.datname LIKE 'tenant\\_%' AND d.datname <> 'tenant_template'",
        )
        .fetch_all(&self.probes)
        .await
        .map_err(self.err())
    }

    /// Makes the tenant's database read-only for its role (`default_transaction_read_only` on
    /// the role and the database) and ends the role's sessions, so they reconnect read-only; or
    /// undoes that. Idempotent.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn set_read_only(
        &self,
        db: &DbName,
        role: &RoleName,
        read_only: bool,
    ) -> Result<(), ControlError> {
        let (d, r) = (ident(db.as_str()), ident(role.as_str()));
        let change = if read_only {
            "SET default_transaction_read_only = on"
        } else {
            "RESET default_transaction_read_only"
        };
        self.execute(format!(
            "ALTER ROLE {r} {change};
             ALTER DATABASE {d} {change};"
        ))
        .await?;
        if read_only {
            self.terminate_sessions(db, role).await?;
        }
        Ok(())
    }

    /// Clones the template into `db`, closed to every connection until [`Self::open_to`]
    /// tags it and opens it to the tenant. A repeated step finds the database there: it takes
    /// it when it is the tenant's (tagged for it, or untagged and still closed: a clone that
    /// was never opened) and refuses any other. Returns whether this call made the clone.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn create_database(&self, db: &DbName, org_id: &OrgId) -> Result<bool, ControlError> {
        let created = self
            .execute(format!(
                "CREATE DATABASE {} TEMPLATE {} ALLOW_CONNECTIONS false",
                ident(db.as_str()),
                ident(DbName::template().as_str())
            ))
            .await;
        match created {
            Ok(()) => Ok(true),
            // A repeat, or another worker (one whose lease we took over) created it meanwhile.
            Err(e) if e.is_server_sqlstate("42P04") => {
                let existing = self.database_facts(db).await?.ok_or_else(|| {
                    ControlError::Corrupt(format!("database {db} exists and then does not"))
                })?;
                self.take_existing(db, org_id, existing)
                    .await
                    .map(|()| false)
            }
            Err(e) => Err(e),
        }
    }

    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn drop_database(&self, db: &DbName) -> Result<(), ControlError> {
        self.execute(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(db.as_str())
        ))
        .await
    }

    /// Drops the tenant's database, if it exists and is tagged for the tenant; one tagged for
    /// anyone else, or not at all, is refused and left as it is (after a restore of the
    /// registry, a name can be another tenant's now).
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn purge_tenant_database(
        &self,
        db: &DbName,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        match self.database_facts(db).await? {
            None => Ok(()),
            Some((_, found)) if tagged_org(found.as_deref()) == Some(org_id.as_str()) => {
                self.drop_database(db).await
            }
            Some((_, found)) => Err(not_the_tenants(
                &format!("database {db} on server {}", self.id),
                org_id,
                found.as_deref(),
            )),
        }
    }

    /// Whether the database allows connections, and its tag, if it exists.
    pub(super) async fn database_facts(
        &self,
        db: &DbName,
    ) -> Result<Option<(bool, Option<String>)>, ControlError> {
        sqlx::query_as(
            "SELECT datallowconn, shobj_description(oid, 'pg_database') FROM pg_database
             WHERE datname = $1",
        )
        .bind(db.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err())
    }

    /// An existing database of the tenant's name: its own (tagged for it, or untagged and still
    /// closed, as [`Self::create_database`] leaves it until it is opened) or refused.
    pub(super) async fn take_existing(
        &self,
        db: &DbName,
        org_id: &OrgId,
        (allow_connections, tag): (bool, Option<String>),
    ) -> Result<(), ControlError> {
        match tag {
            Some(tag) if tagged_org(Some(&tag)) == Some(org_id.as_str()) => Ok(()),
            None if !allow_connections => Ok(()),
            tag => Err(ControlError::conflict(
                ErrorCode::InvalidState,
                format!(
                    "database {db} exists on server {} and is not tenant {org_id}'s ({}); it is \
                     never adopted: drop or rename it, then retry",
                    self.id,
                    tag.map_or_else(|| "untagged".to_owned(), |t| format!("tagged {t}"))
                ),
            )),
        }
    }

    /// Tags an existing database and role with their tenant (deployments older than tags).
    pub async fn tag(
        &self,
        db: Option<&DbName>,
        role: Option<&RoleName>,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        let tag = literal(&tag(org_id));
        let mut sql = String::new();
        if let Some(db) = db {
            sql.push_str(&format!(
                "COMMENT ON DATABASE {} IS {tag};",
                ident(db.as_str())
            ));
        }
        if let Some(role) = role {
            sql.push_str(&format!(
                "COMMENT ON ROLE {} IS {tag};",
                ident(role.as_str())
            ));
        }
        self.execute(sql).await
    }
}
