//! Tenant databases: made from the template, probed, sized, made read-only, dropped.

use tenancy_core::{DbName, ErrorCode, OrgId, RoleName};
use tracing::instrument;

use super::{ServerAdmin, not_the_tenants, tag, tagged_org};
use crate::error::ControlError;
use crate::sql::{ident, literal};

/// The one setting a tenant's role carries in its own database: while it is read-only (as
/// PostgreSQL lists it in `pg_db_role_setting`).
pub const READ_ONLY_SETTING: &str = "default_transaction_read_only=on";

/// The functions that create or write large objects, which PostgreSQL lets everyone call; a
/// read-only tenant may call none (see [`ServerAdmin::set_read_only`]). Never the server-side
/// `lo_import`, which reads the server's files: it stays the superuser's.
const LARGE_OBJECT_WRITERS: &str = "pg_catalog.lo_creat(integer), pg_catalog.lo_create(oid), \
    pg_catalog.lo_from_bytea(oid, bytea), pg_catalog.lo_put(oid, bigint, bytea), \
    pg_catalog.lowrite(integer, bytea), pg_catalog.lo_truncate(integer, integer), \
    pg_catalog.lo_truncate64(integer, bigint)";

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
    /// sampler's round asks each server once, whatever its number of tenants). On the operations
    /// pool, not the probes': callers polling `/usage` and `/health` never make the sampler, and
    /// so storage-quota enforcement, skip a server.
    pub async fn sample_usage(&self) -> Result<Vec<(String, i64, i64)>, ControlError> {
        sqlx::query_as(
            "SELECT d.datname::text, pg_database_size(d.oid), coalesce(a.sessions, 0)
             FROM pg_database d
             LEFT JOIN (SELECT datid, count(*) AS sessions FROM pg_stat_activity GROUP BY datid) a
                 ON a.datid = d.oid
             WHERE d.datname LIKE 'tenant\\_%' AND d.datname <> 'tenant_template'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())
    }

    /// Makes the tenant's database read-only for its role, or writable again. Enforced with
    /// privileges, which no setting of the tenant's undoes: the role loses `INSERT`, `UPDATE`,
    /// `DELETE` and `TRUNCATE` on every table, `TEMPORARY` on the database, and nobody but the
    /// admin may call the functions that write large objects. Its open sessions are refused at
    /// their next write. `default_transaction_read_only` on the role in the database only makes
    /// the refusal read plainly; nothing is set on the database, so the engine's own sessions
    /// (migrations, moves, grants) work on a read-only tenant. Writable again: the app's
    /// privileges mirrored once more (not `TEMPORARY`: see [`Self::set_temp_tables`]).
    /// Idempotent: the sampler asserts it every round.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn set_read_only(
        &self,
        db: &DbName,
        role: &RoleName,
        read_only: bool,
    ) -> Result<(), ControlError> {
        let (d, r) = (ident(db.as_str()), ident(role.as_str()));
        // Earlier versions set the flag on the role and on the database.
        let legacy = format!(
            "ALTER ROLE {r} RESET default_transaction_read_only;
             ALTER DATABASE {d} RESET default_transaction_read_only;"
        );
        if read_only {
            self.execute(format!(
                "{legacy}
                 ALTER ROLE {r} IN DATABASE {d} RESET ALL;
                 ALTER ROLE {r} IN DATABASE {d} SET default_transaction_read_only = on;
                 REVOKE TEMPORARY ON DATABASE {d} FROM {r};"
            ))
            .await?;
            self.execute_in(
                db.as_str(),
                format!(
                    "DO $read_only$ DECLARE s text; BEGIN
                       FOR s IN SELECT nspname FROM pg_namespace
                                WHERE nspname NOT IN ('pg_catalog', 'information_schema')
                                  AND nspname NOT LIKE 'pg\\_%'
                       LOOP
                         EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA %I FROM %I',
                                        s, {role});
                       END LOOP;
                     END $read_only$;
                     REVOKE EXECUTE ON FUNCTION {LARGE_OBJECT_WRITERS} FROM PUBLIC, {r};",
                    role = literal(role.as_str()),
                ),
            )
            .await
        } else {
            // TEMPORARY stays as it is: the tier decides it ([`Self::set_temp_tables`]).
            self.execute(format!(
                "{legacy}
                 ALTER ROLE {r} IN DATABASE {d} RESET ALL;"
            ))
            .await?;
            self.execute_in(
                db.as_str(),
                format!("GRANT EXECUTE ON FUNCTION {LARGE_OBJECT_WRITERS} TO PUBLIC;"),
            )
            .await?;
            self.grant_app_privileges(db, role).await
        }
    }

    /// Grants or revokes `TEMPORARY` on the tenant's database to its role: granted only when
    /// its tier allows temporary tables and it is writable, since they count against neither
    /// `temp_file_limit` nor the storage quota. No other path grants it.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn set_temp_tables(
        &self,
        db: &DbName,
        role: &RoleName,
        allowed: bool,
    ) -> Result<(), ControlError> {
        let (d, r) = (ident(db.as_str()), ident(role.as_str()));
        self.execute(if allowed {
            format!("GRANT TEMPORARY ON DATABASE {d} TO {r}")
        } else {
            format!("REVOKE TEMPORARY ON DATABASE {d} FROM {r}")
        })
        .await
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

    /// Creates `name` empty (from `template0`, with the encoding and locale of `like`'s database
    /// `like_db`), closed to PUBLIC and tagged `tag` before anyone but the admin may connect.
    pub(super) async fn create_empty_like(
        &self,
        name: &DbName,
        (like, like_db): (&ServerAdmin, &DbName),
        tag: &str,
    ) -> Result<(), ControlError> {
        let (encoding, collate, ctype): (String, String, String) = sqlx::query_as(
            "SELECT pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text
             FROM pg_database WHERE datname = $1",
        )
        .bind(like_db.as_str())
        .fetch_one(&like.pool)
        .await
        .map_err(like.err())?;
        let d = ident(name.as_str());
        self.execute(format!(
            "CREATE DATABASE {d} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}
             ALLOW_CONNECTIONS false",
            literal(&encoding),
            literal(&collate),
            literal(&ctype)
        ))
        .await?;
        self.execute(format!(
            "REVOKE ALL ON DATABASE {d} FROM PUBLIC;
             COMMENT ON DATABASE {d} IS {};
             ALTER DATABASE {d} ALLOW_CONNECTIONS true;",
            literal(tag)
        ))
        .await
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
