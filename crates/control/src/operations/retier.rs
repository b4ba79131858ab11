//! `retier`: the tier changed in the registry when this was asked for; here the new tier's
//! limits are applied to the tenant's role.

use tenancy_core::{Step, TenantStatus};

use super::StepContext;
use crate::error::ControlError;
use crate::store::Finish;

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::ApplyLimits => {
            let admin = cx.admin().await?;
            let role = cx.tenant.role_name();
            admin.apply_limits(&role, cx.limits()?).await?;
            // The flag as it is now: the sampler may have changed it since this run began (and
            // asserts it again every round).
            let read_only = cx
                .store
                .tenant(&cx.tenant.org_id)
                .await?
                .is_some_and(|t| t.read_only);
            let active = cx.tenant.status == TenantStatus::Active;
            let allowed = cx.temp_tables(active, read_only)?;
            admin
                .set_temp_tables(&cx.tenant.db_name, &role, allowed)
                .await
        }
        Step::Finish => cx.finish(Finish::Unchanged).await,
        other => Err(cx.unexpected(other)),
    }
}
