//! `purge`: a deleted tenant's database and role are dropped, then its registry row removed (its
//! operations and audit events stay as history). Only what is tagged for the tenant is dropped:
//! a database or role of its name tagged for anyone else (or not at all) fails the purge,
//! reported, and is left as it is.

use tenancy_core::Step;

use super::StepContext;
use crate::error::ControlError;
use crate::store::Finish;

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::DropDatabase => match cx.placed_admin().await? {
            Some(admin) => {
                admin
                    .purge_tenant_database(&cx.tenant.db_name, &cx.tenant.org_id)
                    .await
            }
            None => Ok(()),
        },
        Step::DropRole => match cx.placed_admin().await? {
            Some(admin) => {
                admin
                    .purge_tenant_role(&cx.tenant.role_name(), &cx.tenant.org_id)
                    .await
            }
            None => Ok(()),
        },
        Step::Finish => cx.finish(Finish::Purged).await,
        other => Err(cx.unexpected(other)),
    }
}
