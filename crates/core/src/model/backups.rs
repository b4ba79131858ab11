//! Backups of a tenant's database and restores from them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::states::{BackupKind, BackupState};
use crate::ids::{OrgId, ServerId};

/// One backup of a tenant's database, as the catalog records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backup {
    pub id: Uuid,
    pub org_id: OrgId,
    /// The operation that took it (a `backup`, or the `restore` whose safeguard it is).
    pub operation_id: Uuid,
    pub kind: BackupKind,
    pub state: BackupState,
    /// The server the database was dumped from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<ServerId>,
    /// Bytes of the `pg_dump` archive (what a download returns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// Bytes of the encrypted object in the backup store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<i64>,
    /// Hex SHA-256 of the stored (encrypted) object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The tenant schema's version (`tenant_template` migrations) when it was dumped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i32>,
    /// Rows of each table, counted in the snapshot the dump was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<BTreeMap<String, i64>>,
    /// Large objects in that snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub large_objects: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who asked for it (`system:scheduler` for scheduled ones).
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// When retention deletes it; `null` keeps it until the tenant is purged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last restored into a scratch database and compared with its row counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    /// What that verification found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
    /// Whether that verification found the backup whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_ok: Option<bool>,
}

/// `GET /v1/tenants/{org_id}/backups`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupPage {
    pub backups: Vec<Backup>,
    /// Pass as `cursor` for older backups; `null` on the last page.
    #[serde(default)]
    pub next_cursor: Option<Uuid>,
}

/// `POST /v1/tenants/{org_id}/restore`: bring the tenant's database back, in place, as it was
/// at one of its backups (`backup_id`) or at a moment of its server's WAL archive
/// (`point_in_time`); or, with `into`, copy that into a new tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum RestoreTenant {
    FromBackup(RestoreFromBackup),
    ToMoment(RestoreToMoment),
}

/// A restore from one of the tenant's backups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreFromBackup {
    /// A completed backup of this tenant.
    pub backup_id: Uuid,
    /// Copy into a new tenant instead of restoring in place (platform admins only).
    #[serde(
        default,
        deserialize_with = "crate::present::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub into: Option<RestoreInto>,
}

/// A point-in-time restore: the tenant's database as it was at `point_in_time`, recovered from
/// its server's WAL archive (see `GET /v1/tenants/{org_id}/restore-window`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreToMoment {
    /// RFC 3339; transactions committed at or before it are kept, later ones are not.
    pub point_in_time: DateTime<Utc>,
    /// Copy into a new tenant instead of restoring in place (platform admins only).
    #[serde(
        default,
        deserialize_with = "crate::present::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub into: Option<RestoreInto>,
}

/// Where a restore's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreSource {
    Backup(Uuid),
    Moment(DateTime<Utc>),
}

impl RestoreTenant {
    pub fn source(&self) -> RestoreSource {
        match self {
            RestoreTenant::FromBackup(b) => RestoreSource::Backup(b.backup_id),
            RestoreTenant::ToMoment(m) => RestoreSource::Moment(m.point_in_time),
        }
    }

    pub fn into_target(self) -> Option<RestoreInto> {
        match self {
            RestoreTenant::FromBackup(b) => b.into,
            RestoreTenant::ToMoment(m) => m.into,
        }
    }
}

/// `GET /v1/tenants/{org_id}/restore-window`: the moments a point-in-time restore of the
/// tenant can reach now, from the WAL archive of the server it is on. Both `null` when that
/// server's WAL is not archived or holds no base backup yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoreWindow {
    pub org_id: OrgId,
    pub server_id: Option<ServerId>,
    /// The earliest moment: the end of the oldest base backup the archive holds WAL from
    /// without a gap, or when the tenant came to the server, whichever is later.
    pub earliest: Option<DateTime<Utc>>,
    /// The latest moment already archived (`null` before the first segment after `earliest`
    /// is). Any moment from `earliest` to now is reached: for one after `latest`, the restore
    /// forces a WAL switch and waits for the archive.
    pub latest: Option<DateTime<Utc>>,
}

/// One database server's WAL archive (`tenantctl servers wal-status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WalStatus {
    pub server_id: ServerId,
    /// Whether the configuration archives this server's WAL.
    pub enabled: bool,
    pub timeline: Option<i32>,
    /// Where the archived WAL ends (an LSN, `0/5000000`): every segment before it is stored.
    pub archived_to: Option<String>,
    pub last_archived_at: Option<DateTime<Utc>>,
    /// WAL the server wrote that is not archived yet, in bytes (`null` if the server cannot be
    /// reached).
    pub lag_bytes: Option<i64>,
    pub last_base_backup_at: Option<DateTime<Utc>>,
    pub base_backups: i64,
    pub segments: i64,
    /// Missing segments between the oldest and the newest archived one; the window starts
    /// after the last gap.
    pub gaps: i64,
    pub earliest: Option<DateTime<Utc>>,
    pub latest: Option<DateTime<Utc>>,
}

/// The new tenant a backup is copied into: onboarded with the source's tier and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreInto {
    /// An organization that is no tenant yet.
    pub org_id: OrgId,
    pub name: crate::ids::TenantName,
}
