//! The reconciler: compares the registry with what exists on each server and repairs what is
//! safe to repair. It never drops a database that may hold data.

use std::collections::HashSet;

use serde::Serialize;
use tenancy_core::{OperationKind, OrgId, RoleName, ServerId, Tenant, TenantStatus};

use crate::admins::ServerAdmins;
use crate::config::Config;
use crate::error::ControlError;
use crate::pgadmin::ServerAdmin;
use crate::secrets;
use crate::store::{Store, TenantFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A tenant that should have a database has none on its server.
    MissingDatabase,
    /// A tenant that should have a login role has none.
    MissingRole,
    /// A `tenant_*` database no tenant owns (reported only: it may hold data).
    OrphanDatabase,
    /// A `tenant_*` role no tenant owns.
    OrphanRole,
    /// A tenant in a transitional status with no operation to move it on.
    StuckTenant,
    /// The server could not be inspected.
    ServerUnreachable,
}

/// One difference between the registry and a server.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub server_id: Option<ServerId>,
    pub org_id: Option<OrgId>,
    /// The database or role concerned.
    pub name: String,
    pub detail: String,
    /// Whether this run repaired it.
    pub repaired: bool,
}

pub(crate) async fn run(
    store: &Store,
    admins: &ServerAdmins,
    config: &Config,
    repair: bool,
) -> Result<Vec<Finding>, ControlError> {
    let mut findings = Vec::new();

    for tenant in store.stuck_tenants().await? {
        let kind = if tenant.status == TenantStatus::Deleting {
            OperationKind::Deprovision
        } else {
            OperationKind::Provision
        };
        let repaired = repair && store.enqueue_system(&tenant.org_id, kind).await?.is_some();
        findings.push(Finding {
            kind: FindingKind::StuckTenant,
            server_id: tenant.server_id.clone(),
            org_id: Some(tenant.org_id.clone()),
            name: tenant.db_name.to_string(),
            detail: format!(
                "tenant is {} with no operation under way; {kind} queued",
                tenant.status
            ),
            repaired,
        });
    }

    for server_id in admins.ids().await? {
        let inventory = match admins.get(&server_id).await {
            Ok(admin) => admin.inventory().await.map(|inv| (admin, inv)),
            Err(e) => Err(e),
        };
        let (admin, (databases, roles)) = match inventory {
            Ok(inventory) => inventory,
            Err(e) => {
                findings.push(Finding {
                    kind: FindingKind::ServerUnreachable,
                    server_id: Some(server_id.clone()),
                    org_id: None,
                    name: server_id.to_string(),
                    detail: e.to_string(),
                    repaired: false,
                });
                continue;
            }
        };
        let databases: HashSet<String> = databases.into_iter().collect();
        let roles: HashSet<String> = roles.into_iter().collect();
        // The registry is read after the server: provisioning records a placement before it
        // creates the role and database, so whatever the server showed belongs to a tenant this
        // read sees, and a tenant being provisioned right now is never taken for an orphan.
        let tenants = store.all_tenants(&TenantFilter::default()).await?;
        let here: Vec<&Tenant> = tenants
            .iter()
            .filter(|t| t.server_id.as_ref() == Some(&server_id))
            .collect();
        let known_dbs: HashSet<&str> = here.iter().map(|t| t.db_name.as_str()).collect();
        // A role any tenant names is never dropped, whichever server that tenant is on.
        let known_roles: HashSet<RoleName> = tenants.iter().map(Tenant::role_name).collect();

        for tenant in here.iter().copied() {
            let settled = matches!(
                tenant.status,
                TenantStatus::Active | TenantStatus::Suspended
            );
            let role = tenant.role_name();
            if settled && !databases.contains(tenant.db_name.as_str()) {
                let repaired = repair && repair_database(config, &admin, tenant).await.is_ok();
                findings.push(Finding {
                    kind: FindingKind::MissingDatabase,
                    server_id: Some(server_id.clone()),
                    org_id: Some(tenant.org_id.clone()),
                    name: tenant.db_name.to_string(),
                    detail: format!(
                        "{} tenant has no database; recreated empty from the template",
                        tenant.status
                    ),
                    repaired,
                });
            } else if settled && !roles.contains(role.as_str()) {
                let repaired = repair && repair_role(config, &admin, tenant).await.is_ok();
                findings.push(Finding {
                    kind: FindingKind::MissingRole,
                    server_id: Some(server_id.clone()),
                    org_id: Some(tenant.org_id.clone()),
                    name: role.to_string(),
                    detail: format!("{} tenant has no login role; recreated", tenant.status),
                    repaired,
                });
            }
        }
        for db in databases
            .iter()
            .filter(|db| !known_dbs.contains(db.as_str()))
        {
            findings.push(Finding {
                kind: FindingKind::OrphanDatabase,
                server_id: Some(server_id.clone()),
                org_id: None,
                name: db.clone(),
                detail: "database belongs to no tenant; left in place (drop it by hand if it holds nothing of value)".into(),
                repaired: false,
            });
        }
        let mut orphan_roles: Vec<&String> = roles
            .iter()
            .filter(|r| !known_roles.iter().any(|k| k.as_str() == r.as_str()))
            .filter(|r| !databases.contains(*r))
            .collect();
        orphan_roles.sort();
        for role in orphan_roles {
            let repaired = repair
                && match role.parse::<RoleName>() {
                    Ok(name) => admin.drop_role(&name).await.is_ok(),
                    Err(_) => false,
                };
            findings.push(Finding {
                kind: FindingKind::OrphanRole,
                server_id: Some(server_id.clone()),
                org_id: None,
                name: role.clone(),
                detail: "role belongs to no tenant; dropped".into(),
                repaired,
            });
        }
    }
    metrics::gauge!("tenancy_drift_items")
        .set(findings.iter().filter(|f| !f.repaired).count() as f64);
    Ok(findings)
}

async fn repair_role(
    config: &Config,
    admin: &ServerAdmin,
    tenant: &Tenant,
) -> Result<(), ControlError> {
    let role = tenant.role_name();
    let password = secrets::tenant_password(config.master_key()?, &role);
    admin
        .ensure_role(&role, &password, config.tier_limits(tenant.tier))
        .await?;
    admin.lockdown(&tenant.db_name, &role).await?;
    if tenant.status == TenantStatus::Suspended {
        admin.block(&tenant.db_name, &role).await?;
    }
    Ok(())
}

async fn repair_database(
    config: &Config,
    admin: &ServerAdmin,
    tenant: &Tenant,
) -> Result<(), ControlError> {
    admin.create_database(&tenant.db_name).await?;
    repair_role(config, admin, tenant).await
}
