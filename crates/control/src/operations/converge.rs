//! `converge`: brings the tenant's database and role back to what the registry says of the
//! tenant, as the reconciler found they are not: the role's attributes, limits and password
//! re-asserted (its session settings the tier's, read-only as the registry says), its
//! privileges its own, and its access matching the status (an active tenant
//! can connect; a suspended or deleted one cannot, and has no sessions). Queued by the
//! reconciler, so a repair never races the tenant's other operations and is fenced by the lease
//! like any step.
//!
//! A tenant the reconciler marked failed (its database was missing) is converged when it is
//! retried: active again if its database is back, failed still (the operation fails) if not.
//!
//! A database or role made before tags existed is tagged here (the registry records that the
//! engine made it); one tagged for another tenant is refused.

use tenancy_core::{ErrorCode, Step, TenantStatus};

use super::StepContext;
use crate::error::ControlError;
use crate::pgadmin::tagged_org;
use crate::store::Finish;

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::Converge => converge(cx).await,
        // A tenant the reconciler failed, whose database is back: active again.
        Step::Finish if cx.tenant.status == TenantStatus::Failed => {
            cx.finish(Finish::Status(TenantStatus::Active)).await
        }
        Step::Finish => cx.finish(Finish::Unchanged).await,
        other => Err(cx.unexpected(other)),
    }
}

async fn converge(cx: &mut StepContext<'_>) -> Result<(), ControlError> {
    let tenant = &cx.tenant.clone();
    let recovering = tenant.status == TenantStatus::Failed;
    let blocked = match tenant.status {
        // A failed tenant is here when it is retried after the reconciler failed it.
        TenantStatus::Active | TenantStatus::Failed => false,
        TenantStatus::Suspended | TenantStatus::Deleting | TenantStatus::Deleted => true,
        // Provisioning is its operation's business.
        TenantStatus::Provisioning => return Ok(()),
    };
    let Some(admin) = cx.placed_admin().await? else {
        return Ok(());
    };
    let role = tenant.role_name();
    let db = &tenant.db_name;
    let inventory = admin.inventory().await?;
    let Some(database) = inventory.databases.get(db.as_str()) else {
        if recovering {
            return Err(ControlError::conflict(
                ErrorCode::InvalidState,
                format!(
                    "database {db} is still not on server {}; the tenant stays failed",
                    admin.id()
                ),
            ));
        }
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
    admin.set_read_only(db, &role, tenant.read_only).await?;
    let allowed = cx.temp_tables(!blocked, tenant.read_only)?;
    admin.set_temp_tables(db, &role, allowed).await
}
