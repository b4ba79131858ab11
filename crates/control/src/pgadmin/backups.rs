//! What backups and restores need of a server: a snapshot to dump from with the row counts it
//! sees, the empty database a restore fills, and the swap that puts it in the live database's
//! place (the live one kept, renamed and closed). Every function is idempotent.

use std::collections::BTreeMap;

use sqlx::{Connection, PgConnection, Row};
use tenancy_core::{DbName, ErrorCode, OrgId, RoleName};
use tracing::instrument;
use uuid::Uuid;

use super::{ServerAdmin, tag, tagged_org};
use crate::error::ControlError;
use crate::sql::{ident, literal};

/// The comment on a database a restore is filling: `tenancy:restoring=<org_id>`.
pub fn restoring_tag(org_id: &OrgId) -> String {
    format!("tenancy:restoring={org_id}")
}

/// The comment on a tenant's database a restore replaced, kept for the retention period.
pub fn replaced_tag(org_id: &OrgId) -> String {
    format!("tenancy:restored={org_id}")
}

/// The name a restore fills before the swap.
pub fn restoring_name(operation_id: Uuid) -> DbName {
    format!("restoring_{}", operation_id.simple())
        .parse()
        .expect("a valid database name")
}

/// The name the replaced database is kept under after the swap.
pub fn replaced_name(operation_id: Uuid) -> DbName {
    format!("replaced_{}", operation_id.simple())
        .parse()
        .expect("a valid database name")
}

/// Rows of every table, by qualified name, and the number of large objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub rows: BTreeMap<String, i64>,
    pub large_objects: i64,
}

/// An exported snapshot of a tenant's database, held open (its transaction lives as long as
/// this does), and what it contains.
pub struct DumpSnapshot {
    connection: PgConnection,
    pub id: String,
    pub contents: Contents,
    pub schema_version: Option<i32>,
}

impl DumpSnapshot {
    /// Ends the snapshot's transaction.
    pub async fn close(mut self) {
        let _ = sqlx::raw_sql("COMMIT").execute(&mut self.connection).await;
        let _ = self.connection.close().await;
    }
}

impl ServerAdmin {
    /// Exports a snapshot of `db` (repeatable read, read only) and counts, in it, the rows of
    /// every table and the large objects: `pg_dump --snapshot` then dumps exactly what was
    /// counted.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn dump_snapshot(&self, db: &DbName) -> Result<DumpSnapshot, ControlError> {
        let mut connection = self.connect_to(db.as_str()).await?;
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut connection)
            .await
            .map_err(self.err())?;
        let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut connection)
            .await
            .map_err(self.err())?;
        let contents = self.contents_on(&mut connection).await?;
        let versioned: bool =
            sqlx::query_scalar("SELECT to_regclass('public.refinery_schema_history') IS NOT NULL")
                .fetch_one(&mut connection)
                .await
                .map_err(self.err())?;
        let schema_version = if versioned {
            sqlx::query_scalar("SELECT max(version) FROM public.refinery_schema_history")
                .fetch_one(&mut connection)
                .await
                .map_err(self.err())?
        } else {
            None
        };
        Ok(DumpSnapshot {
            connection,
            id,
            contents,
            schema_version,
        })
    }

    /// Rows of every table of `db` and its large objects, now.
    pub async fn contents(&self, db: &DbName) -> Result<Contents, ControlError> {
        let mut connection = self.connect_to(db.as_str()).await?;
        let contents = self.contents_on(&mut connection).await;
        let _ = connection.close().await;
        contents
    }

    async fn contents_on(&self, connection: &mut PgConnection) -> Result<Contents, ControlError> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%'
             ORDER BY 1",
        )
        .fetch_all(&mut *connection)
        .await
        .map_err(self.err())?;
        let mut rows = BTreeMap::new();
        if !tables.is_empty() {
            // One statement: the names come from the catalog, already quoted by format('%I').
            let counts = tables
                .iter()
                .map(|t| format!("SELECT {}, count(*) FROM {t}", literal(t)))
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            for row in sqlx::raw_sql(sqlx::AssertSqlSafe(counts))
                .fetch_all(&mut *connection)
                .await
                .map_err(self.err())?
            {
                rows.insert(
                    row.try_get::<String, _>(0).map_err(self.err())?,
                    row.try_get::<i64, _>(1).map_err(self.err())?,
                );
            }
        }
        let large_objects: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_largeobject_metadata")
            .fetch_one(&mut *connection)
            .await
            .map_err(self.err())?;
        Ok(Contents {
            rows,
            large_objects,
        })
    }

    /// Creates the empty database a restore fills (see [`Self::create_empty_like`]: like the
    /// live database, tagged as this tenant's restore); one this restore left before (an
    /// interrupted restore) is dropped first.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn create_restore_target(
        &self,
        name: &DbName,
        like: &DbName,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        self.drop_restore_target(name, org_id).await?;
        self.create_empty_like(name, (self, like), &restoring_tag(org_id))
            .await
    }

    /// Drops a restore's database if it is there and tagged as this tenant's restore.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn drop_restore_target(
        &self,
        name: &DbName,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        match self.database_facts(name).await? {
            None => Ok(()),
            Some((_, Some(t))) if t == restoring_tag(org_id) => self.drop_database(name).await,
            Some((_, t)) => Err(ControlError::conflict(
                ErrorCode::InvalidTarget,
                format!(
                    "database {name} exists on server {} and is not tenant {org_id}'s restore \
                     ({t:?}); it is never replaced",
                    self.id
                ),
            )),
        }
    }

    /// Puts the restored database in the live one's place, in one transaction: the live
    /// database is renamed to `replaced` (tagged as replaced, closed) and the restored one
    /// takes its name and the tenant's tag. The tenant's sessions must be ended (and its role
    /// blocked) before. Done already when `restoring` is gone and `replaced` is there.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn swap_restored(
        &self,
        db: &DbName,
        restoring: &DbName,
        replaced: &DbName,
        org_id: &OrgId,
        role: &RoleName,
    ) -> Result<(), ControlError> {
        let restored = self.database_facts(restoring).await?;
        if restored.is_none() && self.database_facts(replaced).await?.is_some() {
            return Ok(());
        }
        match self.database_facts(db).await? {
            Some((_, t)) if tagged_org(t.as_deref()) == Some(org_id.as_str()) => {}
            other => {
                return Err(ControlError::Corrupt(format!(
                    "database {db} on server {} is not tenant {org_id}'s ({other:?})",
                    self.id
                )));
            }
        }
        self.end_database_sessions(db).await?;
        self.end_database_sessions(restoring).await?;
        let (d, r, k) = (
            ident(db.as_str()),
            ident(restoring.as_str()),
            ident(replaced.as_str()),
        );
        self.execute(format!(
            "ALTER DATABASE {d} RENAME TO {k};
             ALTER DATABASE {k} ALLOW_CONNECTIONS false;
             COMMENT ON DATABASE {k} IS {replaced_tag};
             REVOKE ALL ON DATABASE {k} FROM PUBLIC, {role};
             ALTER DATABASE {r} RENAME TO {d};
             COMMENT ON DATABASE {d} IS {tenant_tag};",
            replaced_tag = literal(&replaced_tag(org_id)),
            tenant_tag = literal(&tag(org_id)),
            role = ident(role.as_str()),
        ))
        .await
    }

    /// Hands every large object of `db` to `role` (a copy restored as the admin).
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn own_large_objects(
        &self,
        db: &DbName,
        role: &RoleName,
    ) -> Result<(), ControlError> {
        self.execute_in(
            db.as_str(),
            format!(
                "DO $own$ DECLARE o oid; BEGIN
                   FOR o IN SELECT oid FROM pg_largeobject_metadata LOOP
                     EXECUTE format('ALTER LARGE OBJECT %s OWNER TO %I', o, {role});
                   END LOOP;
                 END $own$;",
                role = literal(role.as_str())
            ),
        )
        .await
    }

    /// Ends every session in `db` but this one's, and waits (up to 5 s) until they are gone.
    async fn end_database_sessions(&self, db: &DbName) -> Result<(), ControlError> {
        for _ in 0..50 {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(db.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())?;
            if left == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(ControlError::Timeout(std::time::Duration::from_secs(5)))
    }
}
