//! Moves of a tenant's database between servers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::states::MoveMode;
use crate::ids::{OrgId, ServerId};

/// `POST /v1/tenants/{org_id}/move`: move the tenant's database to another server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MoveTenant {
    /// The server to move to: active, in the tenant's region, with free capacity. Chosen like
    /// a placement (fewest tenants) when absent.
    #[serde(
        default,
        deserialize_with = "crate::present::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub server_id: Option<ServerId>,
    /// `online` when the source server has `wal_level = logical` and every table can be
    /// replicated, else `offline`. Asking for `online` when it is not possible is refused.
    #[serde(
        default,
        deserialize_with = "crate::present::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub mode: Option<MoveMode>,
}

/// One move of a tenant's database between servers, as the registry API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantMove {
    pub operation_id: Uuid,
    pub org_id: OrgId,
    pub source_server_id: ServerId,
    pub target_server_id: ServerId,
    pub mode: MoveMode,
    /// Whether the mode was asked for (else chosen).
    pub mode_requested: bool,
    /// Bytes of the copy: the dump streamed (offline), or the source database's size (online).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_copied: Option<i64>,
    /// How far the target was behind the source when the cutover began, in bytes of WAL
    /// (online only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes_at_cutover: Option<i64>,
    /// How long the tenant could not write: from blocking it on the source to opening it on the
    /// target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<i64>,
    /// What the verification compared: tables, rows and the checksum of every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
    /// When the registry switched the tenant to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<DateTime<Utc>>,
    /// The source database, renamed and closed, kept until `retained_until` (then dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_db_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_until: Option<DateTime<Utc>>,
    /// Why the move ended with the tenant left on the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    /// When a cancel was asked for (by an operator, or by a suspension or deletion that
    /// preempted the move); the move is abandoned at its next step, before its switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// Who asked for the cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    pub created_at: DateTime<Utc>,
}
