//! `rotate_credentials`: the tenant's role gets the password of the next generation, under the
//! current master key; then the registry records it, which tells every router (change feed) to
//! fetch the new password. Between the two, new connections with the old password fail; routers
//! retry such a borrow once after fetching again. Also how `tenantctl rekey` moves every tenant
//! to a new master key.

use tenancy_core::Step;

use super::StepContext;
use crate::error::ControlError;
use crate::secrets;
use crate::store::Finish;

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    // The next generation is computed from the registry, which only `Finish` changes: a repeated
    // `SetPassword` sets the same password again.
    let next = cx.credentials().await?.rotated(cx.keyring);
    match step {
        Step::SetPassword => {
            let password = secrets::tenant_password(cx.keyring, &next)?;
            cx.admin()
                .await?
                .set_password(&cx.tenant.role_name(), &password)
                .await
        }
        Step::Finish => {
            let key_id = next.key_id.clone().unwrap_or_default();
            cx.finish(Finish::Rotated {
                generation: next.generation,
                key_id,
            })
            .await
        }
        other => Err(cx.unexpected(other)),
    }
}
