//! The change feed routers follow.

use serde::{Deserialize, Serialize};

use super::states::TenantStatus;
use crate::ids::{OrgId, Tier};

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantChange {
    pub seq: i64,
    pub org_id: OrgId,
    pub status: TenantStatus,
    pub tier: Tier,
    /// Over its storage quota: writes fail until it is writable again.
    #[serde(default)]
    pub read_only: bool,
}

/// `GET /v1/changes`: changes after the requested sequence number, oldest first. `last_seq` is
/// the sequence number to ask after next time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeFeed {
    pub changes: Vec<TenantChange>,
    pub last_seq: i64,
    /// The sequence number asked after is one the registry never gave (it was restored from a
    /// backup, say): whatever the client cached may be stale. It drops its cache and asks after
    /// `last_seq` from now on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}
