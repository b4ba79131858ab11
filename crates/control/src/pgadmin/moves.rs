//! What moving a tenant's database needs of a server: its facts (version, `wal_level`), the
//! target's empty database, logical replication (publication and slot on the source,
//! subscription on the target, all named after the move), sequences, per-table checksums, and
//! the source kept, renamed and closed, after the switch. Every function is idempotent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};
use tenancy_core::{DbName, ErrorCode, OrgId, RoleName};
use tracing::instrument;
use uuid::Uuid;

use super::{ServerAdmin, tag, tagged_org};
use crate::error::ControlError;
use crate::sql::{ddl, ident, literal};

/// Prefix of every publication, replication slot and subscription a move makes: the
/// reconciler reports any of them that no move under way owns.
pub const MOVE_REPLICATION_PREFIX: &str = "tenancy_move_";

/// The comment on a source database kept after a move: `tenancy:moved=<org_id>`.
pub fn moved_tag(org_id: &OrgId) -> String {
    format!("tenancy:moved={org_id}")
}

/// The name of a move's publication, slot and subscription.
pub fn replication_name(operation_id: Uuid) -> String {
    format!("{MOVE_REPLICATION_PREFIX}{}", operation_id.simple())
}

/// The name a moved tenant's source database is kept under.
pub fn retained_name(operation_id: Uuid) -> String {
    format!("moved_{}", operation_id.simple())
}

/// What a move checks of a server.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// `server_version_num`: 150018 for 15.18.
    pub version_num: i32,
    pub wal_level: String,
    /// The admin may create subscriptions (PostgreSQL 15 wants a superuser).
    pub superuser: bool,
    /// The admin may create replication slots.
    pub replication: bool,
}

impl ServerFacts {
    pub fn major(&self) -> u32 {
        u32::try_from(self.version_num / 10000).unwrap_or(0)
    }
}

/// Rows and a checksum of every row (order-independent) of each table, by qualified name.
pub type TableChecksums = BTreeMap<String, (i64, String)>;

impl ServerAdmin {
    pub(super) async fn connect_to(&self, db: &str) -> Result<PgConnection, ControlError> {
        PgConnection::connect_with(&self.options(db))
            .await
            .map_err(self.err())
    }

    pub async fn server_facts(&self) -> Result<ServerFacts, ControlError> {
        let (version_num, wal_level, superuser, replication): (String, String, bool, bool) =
            sqlx::query_as(
                "SELECT current_setting('server_version_num'), current_setting('wal_level'),
                        rolsuper, rolsuper OR rolreplication
                 FROM pg_roles WHERE rolname = current_user",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(ServerFacts {
            version_num: version_num.parse().map_err(ControlError::corrupt)?,
            wal_level,
            superuser,
            replication,
        })
    }

    /// Tables of the database logical replication cannot carry updates and deletes of: no
    /// primary key and no replica identity.
    pub async fn tables_without_identity(&self, db: &DbName) -> Result<Vec<String>, ControlError> {
        let mut conn = self.connect_to(db.as_str()).await?;
        let tables = sqlx::query_scalar(
            "SELECT c.oid::regclass::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg\\_%'
               AND (c.relreplident = 'n'
                    OR (c.relreplident = 'd' AND NOT EXISTS (
                        SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))
             ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(self.err());
        let _ = conn.close().await;
        tables
    }

    /// Creates the move's target database empty (from `template0`, with the source's encoding
    /// and locale), tagged for the tenant and closed to PUBLIC; a database of that name this
    /// tenant's move left before (an interrupted copy) is dropped first. Only the admin can
    /// connect until the switch.
    #[instrument(skip(self, like), fields(server_id = %self.id))]
    pub async fn create_move_target(
        &self,
        db: &DbName,
        org_id: &OrgId,
        like: &ServerAdmin,
    ) -> Result<(), ControlError> {
        self.drop_move_target(db, org_id).await?;
        self.create_empty_like(db, (like, db), &tag(org_id)).await
    }

    /// Drops a move's target database, if it is there and is this tenant's (one tagged for
    /// anyone else is refused, never dropped).
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn drop_move_target(&self, db: &DbName, org_id: &OrgId) -> Result<(), ControlError> {
        match self.database_facts(db).await? {
            None => Ok(()),
            Some((_, tag)) if tagged_org(tag.as_deref()) == Some(org_id.as_str()) => {
                self.drop_database(db).await
            }
            Some((_, tag)) => Err(ControlError::conflict(
                ErrorCode::InvalidTarget,
                format!(
                    "database {db} exists on server {} and is not tenant {org_id}'s ({tag:?}); it \
                     is never replaced: drop or rename it, then retry",
                    self.id
                ),
            )),
        }
    }

    /// Drops the tenant's role here if it is this tenant's (a move's target abandoned).
    pub async fn drop_tenant_role(
        &self,
        role: &RoleName,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        match self.role_tag(role).await? {
            Some(existing) if tagged_org(existing.as_deref()) == Some(org_id.as_str()) => {
                self.drop_role(role).await
            }
            _ => Ok(()),
        }
    }

    /// On the source: a publication of every table of the database, and a logical slot for it
    /// (made here, not by the subscription, so that the engine owns and drops it).
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn publish(&self, db: &DbName, name: &str) -> Result<(), ControlError> {
        let mut conn = self.connect_to(db.as_str()).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .map_err(self.err())?;
        if !exists {
            sqlx::raw_sql(ddl(format!(
                "CREATE PUBLICATION {} FOR ALL TABLES",
                ident(name)
            )))
            .execute(&mut conn)
            .await
            .map_err(self.err())?;
        }
        let slot: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
        )
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(self.err())?;
        if !slot {
            sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
                .bind(name)
                .execute(&mut conn)
                .await
                .map_err(self.err())?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// On the target: a subscription to the source's publication, on the slot made for it,
    /// copying the existing rows first.
    #[instrument(skip(self, source), fields(server_id = %self.id))]
    pub async fn subscribe(
        &self,
        db: &DbName,
        name: &str,
        source: &ServerAdmin,
    ) -> Result<(), ControlError> {
        let mut conn = self.connect_to(db.as_str()).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .map_err(self.err())?;
        if !exists {
            // The statement carries the source admin's password: this session keeps it out of
            // the target's log (whatever `log_statement`, and when it fails) and out of
            // `pg_stat_statements` (a placeholder setting when that module is not loaded).
            sqlx::raw_sql(
                "SET log_statement = 'none'; SET log_min_error_statement = 'panic';
                 SET log_min_duration_statement = -1; SET pg_stat_statements.track_utility = off",
            )
            .execute(&mut conn)
            .await
            .map_err(self.err())?;
            let n = ident(name);
            sqlx::raw_sql(ddl(format!(
                "CREATE SUBSCRIPTION {n} CONNECTION {conninfo} PUBLICATION {n}
                 WITH (create_slot = false, slot_name = {slot}, copy_data = true)",
                conninfo = literal(&source.conninfo(db.as_str())),
                slot = literal(name),
            )))
            .execute(&mut conn)
            .await
            .map_err(self.err())?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// libpq connection string of the admin on one of this server's databases (for a
    /// subscription on another server).
    fn conninfo(&self, db: &str) -> String {
        let value = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut parts = vec![
            format!("host={}", value(&self.config.host)),
            format!("port={}", self.config.port),
            format!("user={}", value(&self.config.admin_user)),
            format!("dbname={}", value(db)),
            format!("sslmode={}", self.config.sslmode().as_str()),
            "application_name=tenancy-move".to_owned(),
        ];
        if let Some(password) = &self.config.password {
            parts.push(format!("password={}", value(password.expose_secret())));
        }
        parts.join(" ")
    }

    /// Whether the subscription exists, and how many of its tables have not finished their
    /// initial copy.
    pub async fn subscription_state(
        &self,
        db: &DbName,
        name: &str,
    ) -> Result<Option<i64>, ControlError> {
        let mut conn = self.connect_to(db.as_str()).await?;
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_subscription_rel r
                     WHERE r.srsubid = s.oid AND r.srsubstate <> 'r')
             FROM pg_subscription s WHERE s.subname = $1",
        )
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .map_err(self.err())?;
        let _ = conn.close().await;
        Ok(row.map(|(n,)| n))
    }

    /// On the source: the WAL position now, and how far behind it the slot's subscriber has
    /// confirmed applying (in bytes; `None` while it is not connected).
    pub async fn replication_lag(&self, name: &str) -> Result<(String, Option<i64>), ControlError> {
        sqlx::query_as(
            "SELECT pg_current_wal_lsn()::text,
                    (SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
                     FROM pg_replication_slots WHERE slot_name = $1 AND active)",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(self.err())
    }

    /// On the source: waits until the subscriber has confirmed applying everything up to
    /// `lsn` (the source's position once the tenant was blocked).
    pub async fn wait_applied(
        &self,
        name: &str,
        lsn: &str,
        timeout: Duration,
    ) -> Result<(), ControlError> {
        let started = Instant::now();
        loop {
            let done: Option<bool> = sqlx::query_scalar(
                "SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots
                 WHERE slot_name = $1",
            )
            .bind(name)
            .bind(lsn)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?
            .flatten();
            if done == Some(true) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(ControlError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The last value of every sequence of the database (`None`: never used).
    pub async fn sequences(&self, db: &DbName) -> Result<Vec<(String, Option<i64>)>, ControlError> {
        let mut conn = self.connect_to(db.as_str()).await?;
        let rows = sqlx::query_as(
            "SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences
             ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(self.err());
        let _ = conn.close().await;
        rows
    }

    /// Sets sequences to the values [`Self::sequences`] read elsewhere (logical replication
    /// does not carry them).
    pub async fn set_sequences(
        &self,
        db: &DbName,
        values: &[(String, Option<i64>)],
    ) -> Result<(), ControlError> {
        let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
        let last: Vec<Option<i64>> = values.iter().map(|(_, v)| *v).collect();
        let mut conn = self.connect_to(db.as_str()).await?;
        let result = sqlx::query(
            "SELECT setval(v.name::regclass, coalesce(v.last, s.start_value), v.last IS NOT NULL)
             FROM unnest($1::text[], $2::bigint[]) AS v(name, last)
             JOIN pg_sequences s ON format('%I.%I', s.schemaname, s.sequencename) = v.name",
        )
        .bind(&names)
        .bind(&last)
        .execute(&mut conn)
        .await
        .map_err(self.err());
        let _ = conn.close().await;
        result.map(drop)
    }

    /// Ends replication: the subscription on the target (disabled and detached from its slot
    /// first, so dropping it needs no connection to the source), then on the source the slot
    /// (once its sender has gone) and the publication. Each part that is gone already is
    /// skipped; `target` is `None` when there is no target database any more.
    #[instrument(skip(self, target), fields(server_id = %self.id))]
    pub async fn end_replication(
        &self,
        db: &DbName,
        name: &str,
        target: Option<&ServerAdmin>,
    ) -> Result<(), ControlError> {
        if let Some(target) = target
            && target.database_exists(db).await?
            && target.subscription_state(db, name).await?.is_some()
        {
            let n = ident(name);
            target
                .execute_in(db.as_str(), format!("ALTER SUBSCRIPTION {n} DISABLE"))
                .await?;
            target
                .execute_in(
                    db.as_str(),
                    format!(
                        "ALTER SUBSCRIPTION {n} SET (slot_name = NONE); DROP SUBSCRIPTION {n};"
                    ),
                )
                .await?;
        }
        let started = Instant::now();
        loop {
            let slot: Option<(bool, Option<i32>)> = sqlx::query_as(
                "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1",
            )
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.err())?;
            match slot {
                None => break,
                Some((false, _)) => self.drop_slot(name).await?,
                Some((true, pid)) => {
                    // Its sender outlives the subscription briefly; end it after a grace.
                    if started.elapsed() > Duration::from_secs(2)
                        && let Some(pid) = pid
                    {
                        sqlx::query("SELECT pg_terminate_backend($1)")
                            .bind(pid)
                            .execute(&self.pool)
                            .await
                            .map_err(self.err())?;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        if self.database_exists(db).await? {
            self.execute_in(
                db.as_str(),
                format!("DROP PUBLICATION IF EXISTS {}", ident(name)),
            )
            .await?;
        }
        Ok(())
    }

    /// Rows and an order-independent checksum of every row of every table (the sum of each
    /// row's 64-bit hash of its text form), by table.
    pub async fn table_checksums(&self, db: &DbName) -> Result<TableChecksums, ControlError> {
        let mut conn = self.connect_to(db.as_str()).await?;
        let result = async {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND n.nspname NOT LIKE 'pg\\_%'
                 ORDER BY 1",
            )
            .fetch_all(&mut conn)
            .await?;
            let mut sums = TableChecksums::new();
            for table in tables {
                // The name comes from the catalog, quoted by format('%I.%I').
                let (rows, sum): (i64, Option<String>) =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT count(*), sum(hashtextextended(t::text, 0))::text FROM {table} t"
                    )))
                    .fetch_one(&mut conn)
                    .await?;
                sums.insert(table, (rows, sum.unwrap_or_default()));
            }
            Ok::<_, sqlx::Error>(sums)
        }
        .await
        .map_err(self.err());
        let _ = conn.close().await;
        result
    }

    /// Keeps a moved tenant's source database closed under `retained` (tagged as moved), and
    /// drops the tenant's role here after handing whatever it owned in the database to the
    /// admin. Nothing to do when the database was renamed already.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn retire_moved(
        &self,
        db: &DbName,
        role: &RoleName,
        retained: &str,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        if let Some((_, tag)) = self.database_facts(db).await? {
            if tagged_org(tag.as_deref()) != Some(org_id.as_str()) {
                return Err(ControlError::Corrupt(format!(
                    "database {db} on server {} is not tenant {org_id}'s ({tag:?})",
                    self.id
                )));
            }
            let d = ident(db.as_str());
            self.execute(format!("ALTER DATABASE {d} ALLOW_CONNECTIONS true"))
                .await?;
            if self.role_tag(role).await?.is_some() {
                self.execute_in(
                    db.as_str(),
                    format!(
                        "REASSIGN OWNED BY {r} TO CURRENT_USER; DROP OWNED BY {r};",
                        r = ident(role.as_str())
                    ),
                )
                .await?;
            }
            self.execute(format!("ALTER DATABASE {d} ALLOW_CONNECTIONS false"))
                .await?;
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(db.as_str())
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
            self.execute(format!(
                "COMMENT ON DATABASE {d} IS {}; ALTER DATABASE {d} RENAME TO {};",
                literal(&moved_tag(org_id)),
                ident(retained)
            ))
            .await?;
        }
        if self.role_tag(role).await?.is_some() {
            self.drop_role(role).await?;
        }
        Ok(())
    }

    /// Drops a database a move or a restore kept, once its retention ran out (only one tagged
    /// as a moved or replaced copy).
    pub async fn drop_retained(&self, name: &str) -> Result<(), ControlError> {
        let Ok(db) = name.parse::<DbName>() else {
            return Err(ControlError::Corrupt(format!(
                "retained database name {name:?}"
            )));
        };
        match self.database_facts(&db).await? {
            Some((_, Some(tag)))
                if tag.starts_with("tenancy:moved=") || tag.starts_with("tenancy:restored=") =>
            {
                self.drop_database(&db).await
            }
            Some((_, tag)) => Err(ControlError::Corrupt(format!(
                "database {name} on server {} is not a moved copy ({tag:?})",
                self.id
            ))),
            None => Ok(()),
        }
    }

    /// Drops a replication slot no one uses.
    pub async fn drop_slot(&self, name: &str) -> Result<(), ControlError> {
        sqlx::query(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
             WHERE slot_name = $1 AND NOT active",
        )
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(self.err())
        .map(drop)
    }

    /// The server's replication slots a move made, and whether each is in use.
    pub async fn move_slots(&self) -> Result<Vec<(String, bool)>, ControlError> {
        sqlx::query_as(
            "SELECT slot_name::text, active FROM pg_replication_slots WHERE slot_name LIKE $1",
        )
        .bind(format!("{}%", MOVE_REPLICATION_PREFIX.replace('_', "\\_")))
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())
    }
}
