//! The reconciler: compares the registry with what exists on each server and repairs what is
//! safe to repair. It never drops a database that may hold data.

use std::collections::HashSet;

use serde::Serialize;
use tenancy_core::{OperationKind, OrgId, RoleName, ServerId, TenantStatus};
use tracing::instrument;

use crate::engine::Engine;
use crate::error::ControlError;
use crate::store::TenantRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
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
pub struct Drift {
    pub kind: DriftKind,
    pub server_id: Option<ServerId>,
    pub org_id: Option<OrgId>,
    /// The database or role concerned.
    pub name: String,
    pub detail: String,
    /// Whether this run repaired it.
    pub repaired: bool,
}

#[instrument(skip(engine))]
pub(crate) async fn run(engine: &Engine, repair: bool) -> Result<Vec<Drift>, ControlError> {
    let store = engine.store();
    let mut drift = Vec::new();

    for row in store.stuck_tenants().await? {
        let org_id = row.org_id()?;
        let kind = if row.status == TenantStatus::Deleting.as_str() {
            OperationKind::Deprovision
        } else {
            OperationKind::Provision
        };
        let repaired = repair && store.enqueue_system(&org_id, kind).await?.is_some();
        drift.push(Drift {
            kind: DriftKind::StuckTenant,
            server_id: row.server_id()?,
            org_id: Some(org_id),
            name: row.db_name.clone(),
            detail: format!(
                "tenant is {} with no operation under way; {kind} queued",
                row.status
            ),
            repaired,
        });
    }

    for server_id in engine.inner.server_ids().await? {
        let server_id = &server_id;
        let inventory = match engine.inner.admin(server_id).await {
            Ok(admin) => admin.inventory().await.map(|inv| (admin, inv)),
            Err(e) => Err(e),
        };
        let (admin, (databases, roles)) = match inventory {
            Ok(inventory) => inventory,
            Err(e) => {
                drift.push(Drift {
                    kind: DriftKind::ServerUnreachable,
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
        let tenants = store.tenants().await?;
        let here: Vec<&TenantRow> = tenants
            .iter()
            .filter(|t| t.server_id.as_deref() == Some(server_id.as_str()))
            .collect();
        let known_dbs: HashSet<&str> = here.iter().map(|t| t.db_name.as_str()).collect();
        // A role any tenant names is never dropped, whichever server that tenant is on.
        let known_roles: HashSet<&str> = tenants.iter().map(|t| t.role_name.as_str()).collect();

        for t in here.iter().copied() {
            let status = t.status()?;
            let settled = matches!(status, TenantStatus::Active | TenantStatus::Suspended);
            if settled && !databases.contains(&t.db_name) {
                let repaired = repair && repair_database(engine, &admin, t, status).await.is_ok();
                drift.push(Drift {
                    kind: DriftKind::MissingDatabase,
                    server_id: Some(server_id.clone()),
                    org_id: Some(t.org_id()?),
                    name: t.db_name.clone(),
                    detail: format!(
                        "{} tenant has no database; recreated empty from the template",
                        status
                    ),
                    repaired,
                });
            } else if settled && !roles.contains(&t.role_name) {
                let repaired = repair && repair_role(engine, &admin, t, status).await.is_ok();
                drift.push(Drift {
                    kind: DriftKind::MissingRole,
                    server_id: Some(server_id.clone()),
                    org_id: Some(t.org_id()?),
                    name: t.role_name.clone(),
                    detail: format!("{} tenant has no login role; recreated", status),
                    repaired,
                });
            }
        }
        for db in databases
            .iter()
            .filter(|db| !known_dbs.contains(db.as_str()))
        {
            drift.push(Drift {
                kind: DriftKind::OrphanDatabase,
                server_id: Some(server_id.clone()),
                org_id: None,
                name: db.clone(),
                detail: "database belongs to no tenant; left in place (drop it by hand if it holds nothing of value)".into(),
                repaired: false,
            });
        }
        let mut orphan_roles: Vec<&String> = roles
            .iter()
            .filter(|r| !known_roles.contains(r.as_str()) && !databases.contains(*r))
            .collect();
        orphan_roles.sort();
        for role in orphan_roles {
            let repaired = repair
                && match role.parse::<RoleName>() {
                    Ok(name) => admin.drop_role(&name).await.is_ok(),
                    Err(_) => false,
                };
            drift.push(Drift {
                kind: DriftKind::OrphanRole,
                server_id: Some(server_id.clone()),
                org_id: None,
                name: role.clone(),
                detail: "role belongs to no tenant; dropped".into(),
                repaired,
            });
        }
    }
    metrics::gauge!("tenancy_drift_items").set(drift.iter().filter(|d| !d.repaired).count() as f64);
    Ok(drift)
}

async fn repair_role(
    engine: &Engine,
    admin: &crate::pgadmin::ServerAdmin,
    t: &TenantRow,
    status: TenantStatus,
) -> Result<(), ControlError> {
    let role = t.role_name()?;
    let db = t.db_name()?;
    let password = engine.tenant_password(&role)?;
    admin
        .ensure_role(&role, &password, engine.config().tier_limits(t.tier()?))
        .await?;
    admin.lockdown(&db, &role).await?;
    if status == TenantStatus::Suspended {
        admin.block(&db, &role).await?;
    }
    Ok(())
}

async fn repair_database(
    engine: &Engine,
    admin: &crate::pgadmin::ServerAdmin,
    t: &TenantRow,
    status: TenantStatus,
) -> Result<(), ControlError> {
    admin.create_database(&t.db_name()?).await?;
    repair_role(engine, admin, t, status).await
}
