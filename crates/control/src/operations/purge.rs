//! `purge`: a deleted tenant's database and role are dropped, its backups erased
//! (crypto-shredding: every object deleted, then its backup key destroyed), then its registry
//! row removed (its operations and audit events stay as history). Only what is tagged for the tenant is dropped:
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
        Step::ShredBackups => shred_backups(cx).await,
        Step::Finish => cx.finish(Finish::Purged).await,
        other => Err(cx.unexpected(other)),
    }
}

/// Deletes each backup object, then its catalog row, then the tenant's backup key: once the
/// key is gone no copy of a backup, wherever it was kept, decrypts with what the registry
/// holds. The audit event says how many objects were erased.
async fn shred_backups(cx: &StepContext<'_>) -> Result<(), ControlError> {
    let org_id = &cx.tenant.org_id;
    // A backup still running would store an object after the erasure: wait for it to end.
    if let Some(backup) = cx.store.open_backup(org_id).await? {
        return Err(ControlError::BackupUnderWay(backup));
    }
    let stored = cx.store.all_backups(org_id).await?;
    for backup in &stored {
        cx.backups.delete(&backup.object_key).await?;
        cx.store.forget_backup(backup.backup.id).await?;
    }
    let had_key = cx.store.destroy_backup_key(org_id).await?;
    if had_key || !stored.is_empty() {
        cx.store
            .audit_backups(
                &crate::store::Actor::system(),
                "tenant.backups_shredded",
                org_id,
                serde_json::json!({ "objects_erased": stored.len(), "key_destroyed": had_key }),
            )
            .await?;
    }
    Ok(())
}
