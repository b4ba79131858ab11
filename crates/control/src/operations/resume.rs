//! `resume`: undoes a suspension (LOGIN and CONNECT back), then the tenant is active again. An
//! agency's clients that its suspension suspended are resumed with it; a client an operator
//! suspended stays suspended.

use tenancy_core::{OperationKind, Step, SuspendedBy, TenantStatus};

use super::StepContext;
use crate::error::ControlError;
use crate::store::{Finish, Now};

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::Unblock => {
            let admin = cx.admin().await?;
            let (db, role) = (&cx.tenant.db_name, cx.tenant.role_name());
            admin.unblock(db, &role).await?;
            if cx.tenant.read_only {
                admin.set_read_only(db, &role, true).await?;
            }
            let allowed = cx.temp_tables(true, cx.tenant.read_only)?;
            admin.set_temp_tables(db, &role, allowed).await
        }
        Step::CascadeClients => {
            cx.cascade_to_clients(
                OperationKind::Resume,
                &[TenantStatus::Suspended],
                Now::Lift(SuspendedBy::AgencyCascade),
            )
            .await
        }
        Step::Finish => cx.finish(Finish::Status(TenantStatus::Active)).await,
        other => Err(cx.unexpected(other)),
    }
}
