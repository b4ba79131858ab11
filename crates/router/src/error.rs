use std::time::Duration;

use tenancy_core::{OrgId, QuotaStatus, TenantStatus};

/// Why the router gave no connection. Never a panic, never a connection to the wrong place.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("tenant {0} is unknown")]
    UnknownTenant(OrgId),
    #[error("tenant {0} is suspended")]
    Suspended(OrgId),
    #[error("tenant {0} is deleted")]
    Deleted(OrgId),
    #[error("tenant {org_id} is not active (status {status})")]
    NotActive { org_id: OrgId, status: TenantStatus },
    /// Every connection of the tenant's pool, or of its server's budget, stayed busy.
    #[error("no connection for tenant {org_id} within {waited:?}")]
    PoolTimeout { org_id: OrgId, waited: Duration },
    #[error("database server {server} is unavailable: {source}")]
    ServerUnavailable {
        server: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server's TLS settings (its CA, from the registry) cannot be used.
    #[error("database server {server}: TLS: {detail}")]
    Tls { server: String, detail: String },
    /// The registry could not be asked (down, misconfigured, refused our token).
    #[error("registry: {0}")]
    Registry(String),
    /// Counting would pass the tenant's quota; nothing was counted.
    #[error("tenant {org_id}: quota {} of {} reached ({} used)", quota.resource, quota.limit, quota.used)]
    QuotaExceeded {
        org_id: OrgId,
        quota: Box<QuotaStatus>,
    },
    /// A quota name or amount that cannot be sent (not a valid name, 0, over the maximum).
    #[error("invalid quota request: {0}")]
    InvalidQuota(String),
}

impl RouterError {
    /// Whether trying again later may succeed (a timeout or an outage, not a refusal).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RouterError::PoolTimeout { .. }
                | RouterError::ServerUnavailable { .. }
                | RouterError::Registry(_)
        )
    }

    pub(crate) fn for_status(org_id: &OrgId, status: TenantStatus) -> Self {
        match status {
            TenantStatus::Suspended => RouterError::Suspended(org_id.clone()),
            TenantStatus::Deleted | TenantStatus::Deleting => RouterError::Deleted(org_id.clone()),
            status => RouterError::NotActive {
                org_id: org_id.clone(),
                status,
            },
        }
    }
}
