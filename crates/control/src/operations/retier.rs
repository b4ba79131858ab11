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
            // Only an active tenant may hold TEMPORARY (blocking took it from a suspended one;
            // a failed one's database may be missing): its flag as it is now, since the sampler
            // may have changed it since this run began (and asserts it every round).
            if cx.tenant.status != TenantStatus::Active {
                return Ok(());
            }
            let read_only = cx
                .store
                .tenant(&cx.tenant.org_id)
                .await?
                .is_some_and(|t| t.read_only);
            let allowed = cx.temp_tables(true, read_only)?;
            admin
                .set_temp_tables(&cx.tenant.db_name, &role, allowed)
                .await
        }
        Step::Finish => cx.finish(Finish::Unchanged).await,
        other => Err(cx.unexpected(other)),
    }
}
