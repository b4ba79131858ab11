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

/// `POST /v1/tenants/{org_id}/restore`: bring the tenant's database back as it was at a backup,
/// in place; or, with `into`, copy the backup into a new tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreTenant {
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

/// The new tenant a backup is copied into: onboarded with the source's tier and region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RestoreInto {
    /// An organization that is no tenant yet.
    pub org_id: OrgId,
    pub name: crate::ids::TenantName,
}
