//! `deprovision` (soft delete): the tenant was marked deleting when this was asked for; here it
//! is blocked like a suspension, a `pre_delete` backup of it is queued (`[backups]
//! before_delete`; it runs beside, in the backup lane), then it is marked deleted with its database kept for the retention
//! period (the maintenance loop queues the purge when it runs out). An agency's live clients
//! are deleted with it, each by an operation of its own: the delete was refused if it had any,
//! unless it was asked with `cascade=true`, and no client can join a deleting agency.

use tenancy_core::{OperationKind, Step, TenantStatus};

use super::StepContext;
use crate::error::ControlError;
use crate::store::{Finish, Now};

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::Block => match cx.placed_admin().await? {
            Some(admin) => {
                admin
                    .block(&cx.tenant.db_name, &cx.tenant.role_name())
                    .await?;
                safeguard(cx).await
            }
            None => Ok(()),
        },
        Step::CascadeClients => {
            cx.cascade_to_clients(
                OperationKind::Deprovision,
                super::DELETABLE,
                Now::Status(TenantStatus::Deleting),
            )
            .await
        }
        Step::Finish => {
            let retention = cx.config.engine.retention;
            cx.finish(Finish::Deleted { retention }).await
        }
        other => Err(cx.unexpected(other)),
    }
}

/// Queues the deletion's `pre_delete` backup, once.
async fn safeguard(cx: &StepContext<'_>) -> Result<(), ControlError> {
    let org_id = &cx.tenant.org_id;
    if !cx.config.backups.before_delete
        || cx.store.pre_delete_backup_since(org_id, cx.op.id).await?
    {
        return Ok(());
    }
    let actor = crate::store::Actor::named("system:deletion");
    match cx
        .store
        .request_backup(org_id, tenancy_core::BackupKind::PreDelete, &actor)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code() == tenancy_core::ErrorCode::InvalidState => Ok(()),
        Err(e) => Err(e),
    }
}
