//! `suspend`: the tenant was marked suspended when this was asked for (routers refuse it from
//! the next change-feed answer); here its role loses LOGIN and CONNECT, and its sessions end.
//! An agency's active clients are suspended with it ([`SuspendedBy::AgencyCascade`]), each by
//! an operation of its own.

use tenancy_core::{OperationKind, Step, SuspendedBy, TenantStatus};

use super::StepContext;
use crate::error::ControlError;
use crate::store::{Finish, Now};

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::Block => match cx.placed_admin().await? {
            Some(admin) => {
                admin
                    .block(&cx.tenant.db_name, &cx.tenant.role_name())
                    .await
            }
            None => Ok(()),
        },
        Step::CascadeClients => {
            cx.cascade_to_clients(
                OperationKind::Suspend,
                &[TenantStatus::Active],
                Now::Suspend(SuspendedBy::AgencyCascade),
            )
            .await
        }
        Step::Finish => cx.finish(Finish::Status(TenantStatus::Suspended)).await,
        other => Err(cx.unexpected(other)),
    }
}
