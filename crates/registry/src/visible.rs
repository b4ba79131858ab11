//! What callers who are not platform admins see of failures: a stable code and a fixed message,
//! never the raw cause (which may name servers, or quote PostgreSQL or ZITADEL). Platform admins
//! see everything.

use tenancy_core::{ErrorCode, Operation, Tenant, TenantHealth, TenantStatus};

use crate::auth::Authenticated;

const FAILED_REASON: &str = "provisioning failed; the platform team can see why";
const MIGRATION_FAILED: &str = "the last schema migration failed; the platform team can see why";

impl Authenticated {
    pub fn operation(&self, mut op: Operation) -> Operation {
        if !self.caller.is_platform_admin() && op.last_error.is_some() {
            let code = op.last_error_code.unwrap_or(ErrorCode::Internal);
            op.last_error = Some(code.tenant_visible_detail().to_owned());
        }
        op
    }

    pub fn tenant(&self, mut tenant: Tenant) -> Tenant {
        if !self.caller.is_platform_admin() {
            if tenant.status == TenantStatus::Failed {
                tenant.status_reason = Some(FAILED_REASON.to_owned());
            }
            if tenant.last_migration_error.is_some() {
                tenant.last_migration_error = Some(MIGRATION_FAILED.to_owned());
            }
        }
        tenant
    }

    pub fn health(&self, mut health: TenantHealth) -> TenantHealth {
        if !self.caller.is_platform_admin() && health.last_error.is_some() {
            health.last_error = Some(ErrorCode::Internal.tenant_visible_detail().to_owned());
        }
        health
    }
}
