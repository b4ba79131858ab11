//! What services and operators read: connection info, health, the audit log, counts for
//! metrics, and the reconciler's findings. Nothing here changes anything, except
//! [`Engine::reconcile`] when asked to repair.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tenancy_core::{
    ConnectionInfo, ErrorCode, Operation, OperationKind, OperationState, OrgId, ServerId, Tenant,
    TenantHealth, TenantMove, TenantStatus, Tier,
};

use super::Engine;
use crate::error::ControlError;
use crate::reconcile::{Finding, Repair};
use crate::secrets;
use crate::store::{AuditEvent, AuditFilter, OperationFilter};

impl Engine {
    /// A tenant role's password as it is now, derived from its master key.
    pub async fn tenant_password(&self, org_id: &OrgId) -> Result<SecretString, ControlError> {
        let credentials = self
            .store()
            .credentials(org_id)
            .await?
            .ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))?;
        secrets::tenant_password(self.keyring(), &credentials)
    }

    /// What a router needs to reach the tenant's database; the password only while it is active.
    pub async fn connection_info(&self, org_id: &OrgId) -> Result<ConnectionInfo, ControlError> {
        let tenant = self.tenant(org_id).await?;
        let server_id = tenant.server_id.clone().ok_or_else(|| {
            ControlError::conflict(
                ErrorCode::NotPlaced,
                format!(
                    "tenant {org_id} has no database yet (status {})",
                    tenant.status
                ),
            )
        })?;
        let admin = self.server_admin(&server_id).await?;
        let role = tenant.role_name();
        let password = if tenant.status == TenantStatus::Active {
            Some(
                self.tenant_password(org_id)
                    .await?
                    .expose_secret()
                    .to_owned(),
            )
        } else {
            None
        };
        let agency_status = match &tenant.parent_org_id {
            Some(agency) => Some(match self.store().tenant(agency).await? {
                Some(agency) => agency.status,
                None => TenantStatus::Deleted,
            }),
            None => None,
        };
        Ok(ConnectionInfo {
            org_id: org_id.clone(),
            host: admin.config().host.clone(),
            port: admin.config().port,
            dbname: tenant.db_name,
            user: role,
            password,
            server_id,
            status: tenant.status,
            pool_size: self.config().tier_limits(&tenant.tier)?.pool_size,
            tier: tenant.tier,
            kind: tenant.kind,
            parent_org_id: tenant.parent_org_id,
            agency_status,
            sslmode: admin.config().sslmode(),
            ca_pem: admin.config().ca_pem.clone(),
        })
    }

    /// Whether the tenant's server answers, its database exists, and its schema is current.
    pub async fn health(&self, org_id: &OrgId) -> Result<TenantHealth, ControlError> {
        let tenant = self.tenant(org_id).await?;
        let last_error = self
            .latest_operation(org_id)
            .await?
            .filter(|op| op.state != OperationState::Succeeded)
            .and_then(|op| op.last_error);
        let (mut reachable, mut database_exists, mut template_version) = (false, false, None);
        if let Some(server_id) = &tenant.server_id {
            if let Ok(admin) = self.server_admin(server_id).await
                && let Ok(exists) = admin.probe_database(&tenant.db_name).await
            {
                reachable = true;
                database_exists = exists;
            }
            template_version = self
                .store()
                .server(server_id)
                .await?
                .and_then(|s| s.template_version);
        }
        Ok(TenantHealth {
            org_id: org_id.clone(),
            status: tenant.status,
            reachable,
            database_exists,
            schema_version: tenant.schema_version,
            template_version,
            last_error,
        })
    }

    /// Audit events matching the filter, newest first.
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, ControlError> {
        self.store().audit_events(filter).await
    }

    /// The tenant's newest audit events.
    pub async fn tenant_audit_events(
        &self,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, ControlError> {
        self.audit_events(&AuditFilter {
            org_id: Some(org_id.clone()),
            limit,
            ..AuditFilter::default()
        })
        .await
    }

    /// Tenants per status, for metrics.
    pub async fn tenants_by_status(&self) -> Result<Vec<(TenantStatus, i64)>, ControlError> {
        self.store().tenants_by_status().await
    }

    /// Operations per kind and state, for metrics.
    pub async fn operations_by_state(
        &self,
    ) -> Result<Vec<(OperationKind, OperationState, i64)>, ControlError> {
        self.store().operations_by_state().await
    }

    /// How many tenants there are of each status, tier and kind.
    pub async fn tenant_counts(
        &self,
    ) -> Result<Vec<(TenantStatus, Tier, tenancy_core::TenantKind, i64)>, ControlError> {
        self.store().tenant_counts().await
    }

    /// Operations across tenants matching the filter, newest first.
    pub async fn operations(
        &self,
        filter: &OperationFilter,
    ) -> Result<Vec<Operation>, ControlError> {
        self.store().operations(filter).await
    }

    /// The moves under way, oldest first.
    pub async fn moves_in_flight(&self, limit: i64) -> Result<Vec<TenantMove>, ControlError> {
        self.store().moves_in_flight(limit).await
    }

    /// Tenants read-only over their storage quota or past a warning level (80 or 95 percent of
    /// it), fullest first: each with its level and whether it is read-only.
    pub async fn tenants_near_quota(
        &self,
        limit: i64,
    ) -> Result<Vec<(OrgId, i16, bool)>, ControlError> {
        self.store().tenants_near_quota(limit).await
    }

    /// Tenants with no completed backup within their tier's backup interval (tiers with a
    /// schedule only), most overdue first within each tier: each with its tier and newest
    /// completed backup's time.
    pub async fn tenants_past_backup(
        &self,
        limit: i64,
    ) -> Result<Vec<(OrgId, Tier, Option<DateTime<Utc>>)>, ControlError> {
        let mut past = Vec::new();
        for (tier, limits) in &self.config().tiers {
            let Some(schedule) = &limits.backups else {
                continue;
            };
            let left = limit - past.len() as i64;
            if left <= 0 {
                break;
            }
            for (org_id, last) in self
                .store()
                .tenants_past_backup(tier, schedule.interval, left)
                .await?
            {
                past.push((org_id, tier.clone(), last));
            }
        }
        Ok(past)
    }

    /// How many placed tenants each server has at each schema version the registry recorded.
    pub async fn schema_versions(&self) -> Result<Vec<(ServerId, Option<i32>, i64)>, ControlError> {
        self.store().schema_versions().await
    }

    /// Tenants whose last fleet migration failed, by `org_id`.
    pub async fn migration_failures(&self, limit: i64) -> Result<Vec<Tenant>, ControlError> {
        self.store().migration_failures(limit).await
    }

    /// Compares the registry with what exists on every server, tenant by tenant, and repairs as
    /// much as `repair` allows. Databases are never dropped nor recreated.
    pub async fn reconcile(&self, repair: Repair) -> Result<Vec<Finding>, ControlError> {
        self.reconciler().run(repair).await
    }
}
