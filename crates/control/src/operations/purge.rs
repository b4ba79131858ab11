//! `purge`: a deleted tenant's database and role are dropped, then its registry row removed (its
//! operations and audit events stay as history).

use tenancy_core::Step;

use super::StepContext;
use crate::error::ControlError;
use crate::store::Finish;

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::DropDatabase => match cx.placed_admin().await? {
            Some(admin) => admin.drop_database(&cx.tenant.db_name).await,
            None => Ok(()),
        },
        Step::DropRole => match cx.placed_admin().await? {
            Some(admin) => admin.drop_role(&cx.tenant.role_name()).await,
            None => Ok(()),
        },
        Step::Finish => cx.finish(Finish::Purged).await,
        other => Err(cx.unexpected(other)),
    }
}
