//! A tenant's usage figures.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{DbName, OrgId, ServerId};

/// `GET /v1/tenants/{org_id}/usage`: the figures now, the storage quota, and the sampler's
/// history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantUsage {
    pub org_id: OrgId,
    pub db_name: DbName,
    pub server_id: ServerId,
    pub size_bytes: i64,
    pub connections: i64,
    pub connection_limit: i32,
    /// The tier's storage quota; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_quota_bytes: Option<i64>,
    /// `size_bytes` as a percentage of the quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_used_percent: Option<f64>,
    /// Over quota: writes fail until usage falls below 95% or the tier grows.
    pub read_only: bool,
    /// The sampler's figures since `since` (24 hours by default), oldest first.
    pub history: Vec<UsageSample>,
}

/// One sample of a tenant's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageSample {
    pub sampled_at: DateTime<Utc>,
    pub size_bytes: i64,
    pub connections: i64,
}
