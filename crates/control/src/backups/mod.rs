//! Tenant backups: where they are stored ([`BackupStore`]) and how they are encrypted
//! ([`crypt`]). The backup and restore operations (`operations::backup`,
//! `operations::restore`) stream `pg_dump` through encryption into the store and back.

pub mod crypt;
mod storage;

pub use storage::{BackupStore, Hashing, Upload};

use tenancy_core::ServerId;

use crate::error::ControlError;
use crate::store::{LockName, RegistryLock, Store};

/// One of `server`'s `[backups] per_server` slots, held while a backup, restore or
/// verification streams; [`ControlError::BackupSlotsBusy`] when all are taken (an operation's
/// step then waits without spending an attempt).
pub(crate) async fn slot(
    store: &Store,
    per_server: u32,
    server: &ServerId,
) -> Result<RegistryLock, ControlError> {
    for n in 0..per_server {
        if let Some(lock) = store
            .try_lock(&LockName::BackupSlot(server.clone(), n))
            .await?
        {
            return Ok(lock);
        }
    }
    Err(ControlError::BackupSlotsBusy(server.clone()))
}
