//! `provision`: a new tenant's database. Placed on a server, its role created, the template
//! cloned, locked down, verified by connecting as the tenant, then the tenant is active (and its
//! first admin's activation queued, when it names one).

use tenancy_core::Step;

use super::StepContext;
use crate::error::ControlError;
use crate::store::Finish;

pub(super) const STEPS: &[Step] = &[
    Step::Place,
    Step::Role,
    Step::Database,
    Step::Lockdown,
    Step::Verify,
    Step::Activate,
];

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    let db = &cx.tenant.db_name;
    let role = cx.tenant.role_name();
    match step {
        Step::Place => {
            let server = cx.store.place(&cx.tenant.org_id).await?;
            cx.tenant.server_id = Some(server);
            Ok(())
        }
        Step::Role => {
            let password = cx.password().await?;
            cx.admin()
                .await?
                .ensure_role(&role, &password, cx.limits()?, &cx.tenant.org_id, true)
                .await
        }
        Step::Database => {
            cx.admin()
                .await?
                .create_database(db, &cx.tenant.org_id)
                .await
        }
        Step::Lockdown => cx.admin().await?.lockdown(db, &role).await,
        Step::Verify => {
            let password = cx.password().await?;
            let version = cx
                .admin()
                .await?
                .verify_tenant(db, &role, &password)
                .await?;
            cx.store
                .set_schema_version(&cx.tenant.org_id, version)
                .await
        }
        Step::Activate => cx.finish(Finish::Provisioned).await,
        other => Err(cx.unexpected(other)),
    }
}
