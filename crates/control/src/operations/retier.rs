//! `retier`: the tier changed in the registry when this was asked for; here the new tier's
//! limits are applied to the tenant's role.

use tenancy_core::Step;

use super::StepContext;
use crate::error::ControlError;
use crate::store::Finish;

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::ApplyLimits => {
            cx.admin()
                .await?
                .apply_limits(&cx.tenant.role_name(), cx.limits()?)
                .await
        }
        Step::Finish => cx.finish(Finish::Unchanged).await,
        other => Err(cx.unexpected(other)),
    }
}
