//! The backup catalog (`backups`), each tenant's sealed backup key (`tenant_backup_keys`) and
//! the restores (`tenant_restores`). A catalog row is written before its object is stored and
//! removed only after its object is deleted, so that no object is ever without a row.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tenancy_core::{
    Backup, BackupKind, BackupState, ErrorCode, Lane, Operation, OperationKind, OrgId,
    RestoreSource, TenantStatus,
};
use uuid::Uuid;

use super::operations::{insert_operation_under, open_operation, open_operation_in};
use super::tenants::lock_tenant;
use super::{Actor, Store, audit};
use crate::error::ControlError;
use crate::pgadmin::Contents;
use crate::secrets::SealedSetting;

/// The statuses a tenant can be backed up or restored in.
const BACKUPABLE: &[TenantStatus] = &[TenantStatus::Active, TenantStatus::Suspended];

#[derive(sqlx::FromRow)]
struct BackupRow {
    id: Uuid,
    org_id: String,
    operation_id: Uuid,
    kind: String,
    state: String,
    object_key: String,
    server_id: Option<String>,
    size_bytes: Option<i64>,
    stored_bytes: Option<i64>,
    sha256: Option<String>,
    schema_version: Option<i32>,
    row_counts: Option<sqlx::types::Json<BTreeMap<String, i64>>>,
    large_objects: Option<i64>,
    duration_ms: Option<i64>,
    error: Option<String>,
    created_by: String,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    verified_at: Option<DateTime<Utc>>,
    verification: Option<String>,
    verified_ok: Option<bool>,
}

const BACKUP_COLUMNS: &str = "id, org_id, operation_id, kind, state, object_key, server_id,
    size_bytes, stored_bytes, sha256, schema_version, row_counts, large_objects, duration_ms,
    error, created_by, created_at, completed_at, expires_at, verified_at, verification,
    verified_ok";

/// A catalog row with where its object is.
#[derive(Debug, Clone)]
pub struct StoredBackup {
    pub backup: Backup,
    pub object_key: String,
}

impl TryFrom<BackupRow> for StoredBackup {
    type Error = ControlError;
    fn try_from(row: BackupRow) -> Result<Self, ControlError> {
        Ok(StoredBackup {
            object_key: row.object_key,
            backup: Backup {
                id: row.id,
                org_id: row.org_id.parse().map_err(ControlError::corrupt)?,
                operation_id: row.operation_id,
                kind: row.kind.parse().map_err(ControlError::corrupt)?,
                state: row.state.parse().map_err(ControlError::corrupt)?,
                server_id: row
                    .server_id
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(ControlError::corrupt)?,
                size_bytes: row.size_bytes,
                stored_bytes: row.stored_bytes,
                sha256: row.sha256,
                schema_version: row.schema_version,
                row_counts: row.row_counts.map(|j| j.0),
                large_objects: row.large_objects,
                duration_ms: row.duration_ms,
                error: row.error,
                created_by: row.created_by,
                created_at: row.created_at,
                completed_at: row.completed_at,
                expires_at: row.expires_at,
                verified_at: row.verified_at,
                verification: row.verification,
                verified_ok: row.verified_ok,
            },
        })
    }
}

/// Where a backup's object goes: under its tenant, named by its id.
pub fn object_key(org_id: &OrgId, id: Uuid) -> String {
    format!("tenants/{org_id}/{id}.age")
}

/// Queues a restore of `org_id` from `source` (a backup of it must be completed), in place on
/// its server or, with `into`, a copy into that tenant; records and audits it. The caller holds
/// the tenant's lock and has checked its lanes.
async fn queue_restore(
    tx: &mut super::Tx,
    org_id: &OrgId,
    source: RestoreSource,
    (server, into): (Option<&str>, Option<&OrgId>),
    actor: &Actor,
) -> Result<Operation, ControlError> {
    let (backup_id, moment) = match source {
        RestoreSource::Backup(id) => (Some(id), None),
        RestoreSource::Moment(moment) => (None, Some(moment)),
    };
    if let Some(backup_id) = backup_id {
        completed_backup(tx, org_id, backup_id).await?;
    }
    let (kind, action) = match into {
        None => (OperationKind::Restore, "tenant.restore"),
        Some(_) => (OperationKind::RestoreCopy, "tenant.restore_copy"),
    };
    let op = insert_operation_under(tx, org_id, kind, None).await?;
    sqlx::query(
        "INSERT INTO tenant_restores
             (operation_id, org_id, backup_id, server_id, into_org_id, point_in_time)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(op.id)
    .bind(org_id.as_str())
    .bind(backup_id)
    .bind(server)
    .bind(into.map(OrgId::as_str))
    .bind(moment)
    .execute(&mut **tx)
    .await?;
    let mut detail = serde_json::json!({
        "operation_id": op.id, "backup_id": backup_id, "point_in_time": moment,
    });
    if let Some(into) = into {
        detail["into_org_id"] = serde_json::json!(into);
    }
    audit(tx, actor, action, Some(org_id), None, Some(detail)).await?;
    Ok(op)
}

/// What a stored backup measured.
pub struct Measured<'a> {
    pub server_id: &'a tenancy_core::ServerId,
    pub size_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: &'a str,
    pub schema_version: Option<i32>,
    pub contents: &'a Contents,
    pub took: Duration,
}

/// One restore, as its operation reads it.
#[derive(Debug, Clone)]
pub struct RestoreRecord {
    pub backup_id: Option<Uuid>,
    /// A point-in-time restore's moment (its backup is made by its `recover` step).
    pub point_in_time: Option<DateTime<Utc>>,
    /// The new tenant a copy restores into; `None` for a restore in place.
    pub into_org_id: Option<OrgId>,
}

/// A database a restore replaced whose retention ran out.
#[derive(Debug, Clone)]
pub struct ReplacedDatabase {
    pub operation_id: Uuid,
    pub server_id: tenancy_core::ServerId,
    pub name: String,
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Queues a backup of the tenant: its operation and its catalog row (`running`), in one
    /// transaction. Asking again while a backup is under way returns it. A backup runs beside
    /// the tenant's other operations, but not beside a restore or a purge (nor before the
    /// tenant is provisioned).
    pub async fn request_backup(
        &self,
        org_id: &OrgId,
        kind: BackupKind,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.run("request_backup", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            if let Some(open) = open_operation_in(&mut tx, org_id, Lane::Backup).await? {
                if open.kind == OperationKind::Backup {
                    return Ok(open);
                }
                return Err(super::lifecycle::in_progress(org_id, &open));
            }
            if let Some(open) = open_operation(&mut tx, org_id).await?
                && matches!(open.kind, OperationKind::Restore | OperationKind::Purge)
            {
                return Err(super::lifecycle::in_progress(org_id, &open));
            }
            // A deletion's safeguard is taken of the tenant being deleted.
            let may = kind == BackupKind::PreDelete && tenant.status == TenantStatus::Deleting;
            if !(may || BACKUPABLE.contains(&tenant.status)) || tenant.server_id.is_none() {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!(
                        "cannot back up tenant {org_id} while it is {}",
                        tenant.status
                    ),
                ));
            }
            let op = insert_operation_under(&mut tx, org_id, OperationKind::Backup, None).await?;
            let id = insert_backup(&mut tx, org_id, op.id, kind, &actor.subject).await?;
            audit(
                &mut tx,
                actor,
                "tenant.backup",
                Some(org_id),
                None,
                Some(serde_json::json!({ "operation_id": op.id, "backup_id": id, "kind": kind })),
            )
            .await?;
            tx.commit().await?;
            Ok(op)
        })
        .await
    }

    /// Whether the tenant has a `pre_delete` backup taken since the operation `since` began
    /// (a deletion asks for its safeguard once, whatever its retries).
    pub(crate) async fn pre_delete_backup_since(
        &self,
        org_id: &OrgId,
        since: Uuid,
    ) -> Result<bool, ControlError> {
        self.run("pre_delete_backup_since", async {
            Ok(sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM backups
                                WHERE org_id = $1 AND kind = 'pre_delete'
                                  AND created_at >= (SELECT created_at FROM operations
                                                     WHERE id = $2))",
            )
            .bind(org_id.as_str())
            .bind(since)
            .fetch_one(&self.pool)
            .await?)
        })
        .await
    }

    /// The backup operation `operation_id` takes as `kind`, its catalog row made if missing
    /// (the safeguard backup of a restore is made by its first step).
    pub(crate) async fn operation_backup(
        &self,
        org_id: &OrgId,
        operation_id: Uuid,
        kind: BackupKind,
        actor: &str,
    ) -> Result<StoredBackup, ControlError> {
        self.run("operation_backup", async {
            let mut tx = self.begin().await?;
            let existing = sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {BACKUP_COLUMNS} FROM backups WHERE operation_id = $1 AND kind = $2"
            )))
            .bind(operation_id)
            .bind(kind.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let row = match existing {
                Some(row) => row,
                None => {
                    let id = insert_backup(&mut tx, org_id, operation_id, kind, actor).await?;
                    sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(format!(
                        "SELECT {BACKUP_COLUMNS} FROM backups WHERE id = $1"
                    )))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?
                }
            };
            tx.commit().await?;
            row.try_into()
        })
        .await
    }

    /// The tenant's backup under way, if any.
    pub(crate) async fn open_backup(&self, org_id: &OrgId) -> Result<Option<Uuid>, ControlError> {
        self.run("open_backup", async {
            let mut tx = self.begin().await?;
            let open = open_operation_in(&mut tx, org_id, Lane::Backup).await?;
            tx.commit().await?;
            Ok(open.map(|op| op.id))
        })
        .await
    }

    /// Every backup an operation took.
    pub(crate) async fn operation_backups(
        &self,
        operation_id: Uuid,
    ) -> Result<Vec<StoredBackup>, ControlError> {
        self.run("operation_backups", async {
            sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {BACKUP_COLUMNS} FROM backups WHERE operation_id = $1 ORDER BY created_at"
            )))
            .bind(operation_id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(StoredBackup::try_from)
            .collect()
        })
        .await
    }

    /// Records what a backup's dump stored (it still has to be checked readable).
    pub(crate) async fn backup_stored(
        &self,
        id: Uuid,
        measured: &Measured<'_>,
    ) -> Result<(), ControlError> {
        self.run("backup_stored", async {
            sqlx::query(
                "UPDATE backups SET server_id = $2, size_bytes = $3, stored_bytes = $4,
                     sha256 = $5, schema_version = $6, row_counts = $7, large_objects = $8,
                     duration_ms = $9
                 WHERE id = $1",
            )
            .bind(id)
            .bind(measured.server_id.as_str())
            .bind(int(measured.size_bytes))
            .bind(int(measured.stored_bytes))
            .bind(measured.sha256)
            .bind(measured.schema_version)
            .bind(sqlx::types::Json(&measured.contents.rows))
            .bind(measured.contents.large_objects)
            .bind(i64::try_from(measured.took.as_millis()).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Marks a checked backup completed; retention may delete it `expires_in` from now.
    pub(crate) async fn backup_completed(
        &self,
        id: Uuid,
        expires_in: Option<Duration>,
    ) -> Result<(), ControlError> {
        self.run("backup_completed", async {
            sqlx::query(
                "UPDATE backups SET state = 'completed', completed_at = coalesce(completed_at, now()),
                     expires_at = now() + $2 * interval '1 second'
                 WHERE id = $1",
            )
            .bind(id)
            .bind(expires_in.map(|d| d.as_secs_f64()))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Tenants of `tier` due a scheduled backup: active or suspended, placed, with no backup
    /// (completed or under way) taken within `interval`, and older than `interval`.
    pub(crate) async fn due_backups(
        &self,
        tier: &tenancy_core::Tier,
        interval: Duration,
        limit: i64,
    ) -> Result<Vec<OrgId>, ControlError> {
        self.run("due_backups", async {
            let due: Vec<String> = sqlx::query_scalar(
                "SELECT t.org_id FROM tenants t
                 WHERE t.tier = $1 AND t.status IN ('active', 'suspended')
                   AND t.server_id IS NOT NULL
                   AND t.created_at < now() - $2 * interval '1 second'
                   AND NOT EXISTS (SELECT 1 FROM backups b
                                   WHERE b.org_id = t.org_id AND b.state <> 'failed'
                                     AND b.created_at > now() - $2 * interval '1 second')
                 ORDER BY t.org_id LIMIT $3",
            )
            .bind(tier.as_str())
            .bind(interval.as_secs_f64())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            due.into_iter()
                .map(|o| o.parse().map_err(ControlError::corrupt))
                .collect()
        })
        .await
    }

    /// Completed backups of `tier`'s live tenants past retention: not among the newest `keep`
    /// of their tenant, and older than `keep_for` when set.
    pub(crate) async fn expired_backups(
        &self,
        tier: &tenancy_core::Tier,
        keep: u32,
        keep_for: Option<Duration>,
    ) -> Result<Vec<StoredBackup>, ControlError> {
        self.run("expired_backups", async {
            sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {BACKUP_COLUMNS} FROM (
                     SELECT b.*, row_number() OVER (PARTITION BY b.org_id
                                                    ORDER BY b.created_at DESC) AS newest
                     FROM backups b JOIN tenants t ON t.org_id = b.org_id
                     WHERE t.tier = $1 AND t.status IN ('active', 'suspended', 'failed')
                       AND b.state = 'completed') ranked
                 WHERE newest > greatest($2, 1)
                   AND ($3::float8 IS NULL OR created_at < now() - $3 * interval '1 second')"
            )))
            .bind(tier.as_str())
            .bind(i64::from(keep))
            .bind(keep_for.map(|d| d.as_secs_f64()))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(StoredBackup::try_from)
            .collect()
        })
        .await
    }

    /// Of `tier`'s active and suspended tenants older than `interval`: how many have no
    /// completed backup within it, and the age in seconds of the oldest newest backup (the
    /// tenant's own age for one never backed up).
    pub(crate) async fn backup_lag(
        &self,
        tier: &tenancy_core::Tier,
        interval: Duration,
    ) -> Result<(i64, f64), ControlError> {
        self.run("backup_lag", async {
            let (past, oldest): (i64, Option<f64>) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE last < now() - $2 * interval '1 second'),
                        max(extract(epoch FROM now() - last))::float8
                 FROM (SELECT coalesce((SELECT max(b.completed_at) FROM backups b
                                        WHERE b.org_id = t.org_id AND b.state = 'completed'),
                                       t.created_at) AS last
                       FROM tenants t
                       WHERE t.tier = $1 AND t.status IN ('active', 'suspended')) tenants",
            )
            .bind(tier.as_str())
            .bind(interval.as_secs_f64())
            .fetch_one(&self.pool)
            .await?;
            Ok((past, oldest.unwrap_or(0.0)))
        })
        .await
    }

    /// Of `tier`'s active and suspended tenants older than `interval`, those with no completed
    /// backup within it, most overdue first: each with its newest completed backup's time.
    pub async fn tenants_past_backup(
        &self,
        tier: &tenancy_core::Tier,
        interval: Duration,
        limit: i64,
    ) -> Result<Vec<(OrgId, Option<DateTime<Utc>>)>, ControlError> {
        self.run("tenants_past_backup", async {
            let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
                "SELECT org_id, last FROM (
                     SELECT t.org_id, t.created_at,
                            (SELECT max(b.completed_at) FROM backups b
                             WHERE b.org_id = t.org_id AND b.state = 'completed') AS last
                     FROM tenants t
                     WHERE t.tier = $1 AND t.status IN ('active', 'suspended')) tenants
                 WHERE coalesce(last, created_at) < now() - $2 * interval '1 second'
                 ORDER BY coalesce(last, created_at), org_id LIMIT $3",
            )
            .bind(tier.as_str())
            .bind(interval.as_secs_f64())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(org, last)| Ok((org.parse().map_err(ControlError::corrupt)?, last)))
                .collect()
        })
        .await
    }

    /// When a backup was last verified, any backup.
    pub(crate) async fn last_verification(&self) -> Result<Option<DateTime<Utc>>, ControlError> {
        self.run("last_verification", async {
            Ok(sqlx::query_scalar("SELECT max(verified_at) FROM backups")
                .fetch_one(&self.pool)
                .await?)
        })
        .await
    }

    /// Records a verification of backup `id`.
    pub(crate) async fn backup_verified(
        &self,
        id: Uuid,
        ok: bool,
        verification: &str,
    ) -> Result<(), ControlError> {
        self.run("backup_verified", async {
            sqlx::query(
                "UPDATE backups SET verified_at = now(), verified_ok = $2, verification = $3
                 WHERE id = $1",
            )
            .bind(id)
            .bind(ok)
            .bind(verification)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// The newest completed backup of each tenant of `org_ids` (every tenant when empty).
    pub async fn latest_backups(&self, org_ids: &[OrgId]) -> Result<Vec<Backup>, ControlError> {
        let orgs: Vec<&str> = org_ids.iter().map(OrgId::as_str).collect();
        self.run("latest_backups", async {
            sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(format!(
                "SELECT DISTINCT ON (org_id) {BACKUP_COLUMNS} FROM backups
                 WHERE state = 'completed' AND (cardinality($1::text[]) = 0 OR org_id = ANY($1))
                 ORDER BY org_id, created_at DESC"
            )))
            .bind(&orgs)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| StoredBackup::try_from(r).map(|s| s.backup))
            .collect()
        })
        .await
    }

    /// Marks the running backups of an operation that gave up failed, with why.
    pub(crate) async fn backups_failed(
        &self,
        operation_id: Uuid,
        why: &str,
    ) -> Result<(), ControlError> {
        self.run("backups_failed", async {
            sqlx::query(
                "UPDATE backups SET state = 'failed', error = $2
                 WHERE operation_id = $1 AND state = 'running'",
            )
            .bind(operation_id)
            .bind(why)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// One page of the tenant's backups, newest first, after the backup `after`.
    pub async fn backups(
        &self,
        org_id: &OrgId,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Backup>, ControlError> {
        self.run("backups", async {
            let rows = sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {BACKUP_COLUMNS} FROM backups
                 WHERE org_id = $1
                   AND ($2::uuid IS NULL OR (created_at, id) <
                        (SELECT created_at, id FROM backups WHERE id = $2 AND org_id = $1))
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            )))
            .bind(org_id.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|r| StoredBackup::try_from(r).map(|s| s.backup))
                .collect()
        })
        .await
    }

    /// The tenant's backup `id` (`None` for another tenant's).
    pub async fn backup(
        &self,
        org_id: &OrgId,
        id: Uuid,
    ) -> Result<Option<StoredBackup>, ControlError> {
        self.run("backup", async {
            sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {BACKUP_COLUMNS} FROM backups WHERE id = $1 AND org_id = $2"
            )))
            .bind(id)
            .bind(org_id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(StoredBackup::try_from)
            .transpose()
        })
        .await
    }

    /// Every catalog row of the tenant (a purge erases them all).
    pub(crate) async fn all_backups(
        &self,
        org_id: &OrgId,
    ) -> Result<Vec<StoredBackup>, ControlError> {
        self.run("all_backups", async {
            sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {BACKUP_COLUMNS} FROM backups WHERE org_id = $1"
            )))
            .bind(org_id.as_str())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(StoredBackup::try_from)
            .collect()
        })
        .await
    }

    /// Removes a catalog row whose object is deleted.
    pub(crate) async fn forget_backup(&self, id: Uuid) -> Result<(), ControlError> {
        self.run("forget_backup", async {
            sqlx::query("DELETE FROM backups WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// Writes an audit event of something done to the tenant's backups (a download, a purge's
    /// erasure) on its own.
    pub(crate) async fn audit_backups(
        &self,
        actor: &Actor,
        action: &str,
        org_id: &OrgId,
        after: serde_json::Value,
    ) -> Result<(), ControlError> {
        self.run("audit_backups", async {
            let tx = self.begin().await?;
            super::commit_audited(tx, actor, action, Some(org_id), None, Some(after)).await
        })
        .await
    }

    /// Every object key in the catalog, and whether its backup completed (the reconciler
    /// compares them with the store).
    pub(crate) async fn backup_objects(&self) -> Result<Vec<(String, bool)>, ControlError> {
        self.run("backup_objects", async {
            Ok(
                sqlx::query_as("SELECT object_key, state = 'completed' FROM backups")
                    .fetch_all(&self.pool)
                    .await?,
            )
        })
        .await
    }

    /// The tenant's sealed backup key and its public half.
    pub(crate) async fn backup_key(
        &self,
        org_id: &OrgId,
    ) -> Result<Option<(SealedSetting, String)>, ControlError> {
        self.run("backup_key", async {
            let row: Option<(String, Vec<u8>, String)> = sqlx::query_as(
                "SELECT key_id, sealed, recipient FROM tenant_backup_keys WHERE org_id = $1",
            )
            .bind(org_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(|(key_id, bytes, recipient)| (SealedSetting { key_id, bytes }, recipient)))
        })
        .await
    }

    /// Stores the tenant's backup key unless it has one already; returns the one it has.
    pub(crate) async fn insert_backup_key(
        &self,
        org_id: &OrgId,
        sealed: &SealedSetting,
        recipient: &str,
    ) -> Result<(SealedSetting, String), ControlError> {
        self.run("insert_backup_key", async {
            let row: (String, Vec<u8>, String) = sqlx::query_as(
                "WITH made AS (
                     INSERT INTO tenant_backup_keys (org_id, key_id, sealed, recipient)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (org_id) DO NOTHING
                     RETURNING key_id, sealed, recipient)
                 SELECT key_id, sealed, recipient FROM made
                 UNION ALL
                 SELECT key_id, sealed, recipient FROM tenant_backup_keys WHERE org_id = $1
                 LIMIT 1",
            )
            .bind(org_id.as_str())
            .bind(&sealed.key_id)
            .bind(&sealed.bytes)
            .bind(recipient)
            .fetch_one(&self.pool)
            .await?;
            Ok((
                SealedSetting {
                    key_id: row.0,
                    bytes: row.1,
                },
                row.2,
            ))
        })
        .await
    }

    /// Destroys the tenant's backup key (a purge's crypto-shredding); returns whether it had
    /// one.
    pub(crate) async fn destroy_backup_key(&self, org_id: &OrgId) -> Result<bool, ControlError> {
        self.run("destroy_backup_key", async {
            let done = sqlx::query("DELETE FROM tenant_backup_keys WHERE org_id = $1")
                .bind(org_id.as_str())
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    /// Backup keys sealed under another master key than `key_id` (`tenantctl rekey`).
    pub(crate) async fn backup_keys_to_reseal(
        &self,
        key_id: &str,
    ) -> Result<Vec<(OrgId, SealedSetting)>, ControlError> {
        self.run("backup_keys_to_reseal", async {
            let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                "SELECT org_id, key_id, sealed FROM tenant_backup_keys WHERE key_id <> $1",
            )
            .bind(key_id)
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(org, key_id, bytes)| {
                    Ok((
                        org.parse().map_err(ControlError::corrupt)?,
                        SealedSetting { key_id, bytes },
                    ))
                })
                .collect()
        })
        .await
    }

    /// Replaces a backup key's sealing (same key, sealed under another master key).
    pub(crate) async fn reseal_backup_key(
        &self,
        org_id: &OrgId,
        before: &str,
        sealed: &SealedSetting,
    ) -> Result<(), ControlError> {
        self.run("reseal_backup_key", async {
            sqlx::query(
                "UPDATE tenant_backup_keys SET key_id = $3, sealed = $4
                 WHERE org_id = $1 AND key_id = $2",
            )
            .bind(org_id.as_str())
            .bind(before)
            .bind(&sealed.key_id)
            .bind(&sealed.bytes)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    /// Queues a restore of the tenant from its backup (completed, this tenant's) or to a
    /// moment (its window checked by the caller).
    pub async fn request_restore(
        &self,
        org_id: &OrgId,
        source: RestoreSource,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.run("request_restore", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            for lane in [Lane::Tenant, Lane::Backup] {
                if let Some(open) = open_operation_in(&mut tx, org_id, lane).await? {
                    return Err(super::lifecycle::in_progress(org_id, &open));
                }
            }
            if !BACKUPABLE.contains(&tenant.status) || tenant.server_id.is_none() {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!(
                        "cannot restore tenant {org_id} while it is {}",
                        tenant.status
                    ),
                ));
            }
            let server = tenant.server_id.as_ref().map(|s| s.as_str());
            let op = queue_restore(&mut tx, org_id, source, (server, None), actor).await?;
            tx.commit().await?;
            Ok(op)
        })
        .await
    }

    /// Queues a copy of `org_id`'s completed backup `backup_id` into the tenant `into` (made
    /// by the caller just before): an operation of the source in its backup lane, so that the
    /// source's own operations go on meanwhile.
    pub async fn request_restore_copy(
        &self,
        org_id: &OrgId,
        source: RestoreSource,
        into: &OrgId,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.run("request_restore_copy", async {
            let mut tx = self.begin().await?;
            lock_tenant(&mut tx, org_id).await?;
            if let Some(open) = open_operation_in(&mut tx, org_id, Lane::Backup).await? {
                return Err(super::lifecycle::in_progress(org_id, &open));
            }
            let op = queue_restore(&mut tx, org_id, source, (None, Some(into)), actor).await?;
            tx.commit().await?;
            Ok(op)
        })
        .await
    }

    /// The copy queued into the tenant `into`, if any (what a repeated copy request answers).
    pub(crate) async fn copy_into(&self, into: &OrgId) -> Result<Option<Operation>, ControlError> {
        self.run("copy_into", async {
            let op: Option<Uuid> = sqlx::query_scalar(
                "SELECT operation_id FROM tenant_restores WHERE into_org_id = $1
                 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(into.as_str())
            .fetch_optional(&self.pool)
            .await?;
            match op {
                Some(id) => self.operation(id).await,
                None => Ok(None),
            }
        })
        .await
    }

    pub(crate) async fn restore_record(
        &self,
        operation_id: Uuid,
    ) -> Result<RestoreRecord, ControlError> {
        self.run("restore_record", async {
            let (backup_id, into, point_in_time): (
                Option<Uuid>,
                Option<String>,
                Option<DateTime<Utc>>,
            ) = sqlx::query_as(
                "SELECT backup_id, into_org_id, point_in_time FROM tenant_restores
                 WHERE operation_id = $1",
            )
            .bind(operation_id)
            .fetch_one(&self.pool)
            .await?;
            Ok(RestoreRecord {
                backup_id,
                point_in_time,
                into_org_id: into
                    .map(|o| o.parse())
                    .transpose()
                    .map_err(ControlError::corrupt)?,
            })
        })
        .await
    }

    /// Records the backup a point-in-time restore's recovery made, and of which server.
    pub(crate) async fn restore_recovered(
        &self,
        operation_id: Uuid,
        backup_id: Uuid,
        from: &tenancy_core::ServerId,
    ) -> Result<(), ControlError> {
        self.run("restore_recovered", async {
            sqlx::query(
                "UPDATE tenant_restores SET backup_id = $2, recovered_from = $3
                 WHERE operation_id = $1",
            )
            .bind(operation_id)
            .bind(backup_id)
            .bind(from.as_str())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn restore_verified(
        &self,
        operation_id: Uuid,
        verification: &str,
    ) -> Result<(), ControlError> {
        self.run("restore_verified", async {
            sqlx::query("UPDATE tenant_restores SET verification = $2 WHERE operation_id = $1")
                .bind(operation_id)
                .bind(verification)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    /// Records the swap: the database `org_id` had on `server`, replaced, kept until
    /// `retention` from now, and the tenant's `restored_at` set (a change routers see on the
    /// feed).
    pub(crate) async fn restore_swapped(
        &self,
        operation_id: Uuid,
        org_id: &OrgId,
        (server, replaced): (&tenancy_core::ServerId, &str),
        retention: Duration,
    ) -> Result<(), ControlError> {
        self.run("restore_swapped", async {
            let mut tx = self.begin().await?;
            sqlx::query(
                "UPDATE tenant_restores SET swapped_at = coalesce(swapped_at, now()),
                     retained_db_name = $2,
                     retained_until = coalesce(retained_until, now() + $3 * interval '1 second'),
                     server_id = $4
                 WHERE operation_id = $1",
            )
            .bind(operation_id)
            .bind(replaced)
            .bind(retention.as_secs_f64())
            .bind(server.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE tenants SET restored_at = now() WHERE org_id = $1")
                .bind(org_id.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Databases restores replaced whose retention ran out.
    pub(crate) async fn replaced_databases_due(
        &self,
    ) -> Result<Vec<ReplacedDatabase>, ControlError> {
        self.run("replaced_databases_due", async {
            let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
                "SELECT operation_id, server_id, retained_db_name FROM tenant_restores
                 WHERE retained_db_name IS NOT NULL AND retained_dropped_at IS NULL
                   AND retained_until <= now() AND server_id IS NOT NULL",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter()
                .map(|(operation_id, server, name)| {
                    Ok(ReplacedDatabase {
                        operation_id,
                        server_id: server.parse().map_err(ControlError::corrupt)?,
                        name,
                    })
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn replaced_database_dropped(
        &self,
        operation_id: Uuid,
    ) -> Result<(), ControlError> {
        self.run("replaced_database_dropped", async {
            sqlx::query(
                "UPDATE tenant_restores SET retained_dropped_at = now() WHERE operation_id = $1",
            )
            .bind(operation_id)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }
}

async fn insert_backup(
    tx: &mut super::Tx,
    org_id: &OrgId,
    operation_id: Uuid,
    kind: BackupKind,
    actor: &str,
) -> Result<Uuid, ControlError> {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO backups (id, org_id, operation_id, kind, state, object_key, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(org_id.as_str())
    .bind(operation_id)
    .bind(kind.as_str())
    .bind(BackupState::Running.as_str())
    .bind(object_key(org_id, id))
    .bind(actor)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Refuses a backup that is not `org_id`'s (not found) or not completed.
async fn completed_backup(
    tx: &mut super::Tx,
    org_id: &OrgId,
    backup_id: Uuid,
) -> Result<(), ControlError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM backups WHERE id = $1 AND org_id = $2")
            .bind(backup_id)
            .bind(org_id.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    match state.as_deref() {
        None => Err(ControlError::NotFound {
            what: format!("backup {backup_id} of tenant {org_id}"),
        }),
        Some("completed") => Ok(()),
        Some(other) => Err(ControlError::conflict(
            ErrorCode::InvalidState,
            format!("backup {backup_id} is {other}; only a completed one restores"),
        )),
    }
}
