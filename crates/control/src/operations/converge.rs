//! `converge`: brings the tenant's database and role back to what the registry says of the
//! tenant, as the reconciler found they are not: the role's attributes, limits and password
//! re-asserted (its session settings the tier's, read-only as the registry says), its
//! privileges its own, and its access matching the status (an active tenant
//! can connect; a suspended or deleted one cannot, and has no sessions). Queued by the
//! reconciler, so a repair never races the tenant's other operations and is fenced by the lease
//! like any step.
//!
//! A database or role made before tags existed is tagged here (the registry records that the
//! engine made it); one tagged for another tenant is refused.

use tenancy_core::{Step, TenantStatus};

use super::StepContext;
use crate::error::ControlError;
use crate::pgadmin::tagged_org;
use crate::store::Finish;

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::Converge => converge(cx).await,
        Step::Finish => cx.finish(Finish::Unchanged).await,
        other => Err(cx.unexpected(other)),
    }
}

async fn converge(cx: &mut StepContext<'_>) -> Result<(), ControlError> {
    let tenant = &cx.tenant.clone();
    let blocked = match tenant.status {
        TenantStatus::Active => false,
        TenantStatus::Suspended | TenantStatus::Deleting | TenantStatus::Deleted => true,
        // Provisioning and failed tenants are their operations' business.
        TenantStatus::Provisioning | TenantStatus::Failed => return Ok(()),
    };
    let Some(admin) = cx.placed_admin().await? else {
        return Ok(());
    };
    let role = tenant.role_name();
    let db = &tenant.db_name;
    let inventory = admin.inventory().await?;
    let Some(database) = inventory.databases.get(db.as_str()) else {
        // Never recreated: the reconciler marks the tenant failed instead.
        return Ok(());
    };
    // An untagged database is tagged by the lockdown below, which opens it to the role.
    let untagged_role = inventory
        .roles
        .get(role.as_str())
        .is_some_and(|r| r.tag.is_none());
    if untagged_role {
        admin.tag(None, Some(&role), &tenant.org_id).await?;
    }
    if tagged_org(database.tag.as_deref()).is_some_and(|org| org != tenant.org_id.as_str()) {
        return Err(ControlError::Corrupt(format!(
            "database {db} is tagged for another tenant ({:?})",
            database.tag
        )));
    }
    let password = cx.password().await?;
    admin
        .ensure_role(&role, &password, cx.limits()?, &tenant.org_id, !blocked)
        .await?;
    admin.lockdown(db, &role, &tenant.org_id).await?;
    if blocked {
        admin.block(db, &role).await?;
    } else {
        admin.unblock(db, &role).await?;
    }
    // Last: the grants above are a writable tenant's.
    admin.set_read_only(db, &role, tenant.read_only).await
}
