//! `activate_admin`: invites the organization's first admin through the identity provider and
//! grants `tenant_admin`. Queued when a tenant with an `admin_email` becomes active; runs beside
//! the tenant's other operations (it touches no database). A tenant deleted in the meantime gets
//! no admin; identity-provider failures retry with backoff and never roll back the database.

use tenancy_core::{Step, TenantStatus};
use tracing::info;

use super::StepContext;
use crate::activator::AdminActivation;
use crate::error::ControlError;
use crate::store::Finish;

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::InviteAdmin => invite(cx).await,
        Step::Finish => cx.finish(Finish::Unchanged).await,
        other => Err(cx.unexpected(other)),
    }
}

async fn invite(cx: &StepContext<'_>) -> Result<(), ControlError> {
    if matches!(
        cx.tenant.status,
        TenantStatus::Deleting | TenantStatus::Deleted
    ) {
        info!("tenant is being deleted: its admin is not invited");
        return Ok(());
    }
    let email = cx.tenant.admin_email.clone().ok_or_else(|| {
        ControlError::Corrupt(format!("tenant {} names no admin e-mail", cx.tenant.org_id))
    })?;
    // Workers without an activator never claim this kind (see `runnable`).
    let activator = cx.activator.ok_or_else(|| {
        ControlError::Config("admin activation needs ZITADEL's management API configured".into())
    })?;
    let activation = AdminActivation {
        org_id: cx.tenant.org_id.clone(),
        email,
    };
    let user_id = activator.activate_admin(&activation).await?;
    info!(
        user_id,
        "organization admin invited and granted tenant_admin"
    );
    Ok(())
}
