//! `backup`: the tenant's database is dumped (`pg_dump -Fc`, large objects included, from an
//! exported snapshot whose row counts the catalog records) and streamed through encryption into
//! the backup store, with no file of it anywhere; then the stored object is read back,
//! authenticated and listed before the backup counts. A restore takes its safeguard backup
//! the same way ([`take`]).

use std::time::Instant;

use tenancy_core::{BackupKind, BackupState, Step};
use tokio::io::AsyncWriteExt;

use super::StepContext;
use crate::backups::crypt;
use crate::error::ControlError;
use crate::pgadmin::ServerAdmin;
use crate::pgtools::PgTools;
use crate::store::{Finish, Measured, RegistryLock, StoredBackup};

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    match step {
        Step::Dump => dump(cx, BackupKind::Manual, None).await.map(drop),
        Step::CheckBackup => check(cx, BackupKind::Manual).await,
        Step::Finish => cx.finish(Finish::Unchanged).await,
        other => Err(cx.unexpected(other)),
    }
}

/// Dumps and checks the operation's backup of `kind` (both idempotent).
pub(super) async fn take(cx: &mut StepContext<'_>, kind: BackupKind) -> Result<(), ControlError> {
    dump(cx, kind, None).await?;
    check(cx, kind).await
}

/// [`take`] of the tenant's database as `scratch` (a recovered instance) holds it; recorded
/// as of the tenant's server.
pub(super) async fn take_from(
    cx: &mut StepContext<'_>,
    kind: BackupKind,
    scratch: &ServerAdmin,
) -> Result<StoredBackup, ControlError> {
    dump(cx, kind, Some(scratch)).await?;
    check(cx, kind).await?;
    this_backup(cx, kind).await
}

/// The operation's backup of `kind`: a `backup` operation's row was made with it (its kind is
/// whatever was asked for), a restore's safeguard is made here.
async fn this_backup(cx: &StepContext<'_>, kind: BackupKind) -> Result<StoredBackup, ControlError> {
    let kind = match cx.op.kind {
        tenancy_core::OperationKind::Backup => cx
            .store
            .operation_backups(cx.op.id)
            .await?
            .into_iter()
            .next()
            .map(|b| b.backup.kind)
            .unwrap_or(kind),
        _ => kind,
    };
    cx.store
        .operation_backup(&cx.tenant.org_id, cx.op.id, kind, "system:engine")
        .await
}

/// Streams the dump into the store, unless it was stored already: of the tenant's server, or
/// of `from`.
async fn dump(
    cx: &mut StepContext<'_>,
    kind: BackupKind,
    from: Option<&ServerAdmin>,
) -> Result<StoredBackup, ControlError> {
    let stored = this_backup(cx, kind).await?;
    if stored.backup.state == BackupState::Completed || stored.backup.sha256.is_some() {
        return Ok(stored);
    }
    let own = cx.admin().await?;
    let _slot = match from {
        None => Some(slot(cx, own.id()).await?),
        // A scratch instance is not the server: its slots are not taken.
        Some(_) => None,
    };
    let admin = from.unwrap_or(&own);
    let recipients = recipients(cx).await?;
    let tools = tools(cx).await?;
    let db = &cx.tenant.db_name;
    if !admin.database_exists(db).await? {
        return Err(ControlError::conflict(
            tenancy_core::ErrorCode::InvalidState,
            format!("tenant {}'s database is gone", cx.tenant.org_id),
        ));
    }
    let started = Instant::now();
    let snapshot = admin.dump_snapshot(db).await?;
    let mut upload = cx.backups.writer(&stored.object_key);
    let written = async {
        let mut encrypting = crypt::encrypting(&recipients, &mut upload).await?;
        let size = tools
            .dump_into(admin.config(), db.as_str(), &snapshot.id, &mut encrypting)
            .await?;
        encrypting
            .shutdown()
            .await
            .map_err(|e| ControlError::BackupStore(format!("storing the backup: {e}")))?;
        Ok::<_, ControlError>(size)
    }
    .await;
    let size = match written {
        Ok(size) => size,
        Err(e) => {
            upload.abort().await;
            snapshot.close().await;
            return Err(e);
        }
    };
    let (stored_bytes, sha256) = upload.stored();
    let measured = Measured {
        server_id: own.id(),
        size_bytes: size,
        stored_bytes,
        sha256: &sha256,
        schema_version: snapshot.schema_version,
        contents: &snapshot.contents,
        took: started.elapsed(),
    };
    cx.store.backup_stored(stored.backup.id, &measured).await?;
    snapshot.close().await;
    metrics::counter!("tenancy_backup_bytes_total").increment(stored_bytes);
    metrics::histogram!("tenancy_backup_duration_seconds").record(started.elapsed().as_secs_f64());
    this_backup(cx, kind).await
}

/// Reads the stored object back: it must be the bytes stored (SHA-256), decrypt and
/// authenticate to the end, and hold a `pg_dump` archive; then the backup counts.
async fn check(cx: &mut StepContext<'_>, kind: BackupKind) -> Result<(), ControlError> {
    let stored = this_backup(cx, kind).await?;
    if stored.backup.state == BackupState::Completed {
        return Ok(());
    }
    let tools = tools(cx).await?;
    let identity = identity(cx).await?;
    let what = format!("backup {}", stored.backup.id);
    let mut read = crate::backups::Hashing::new(cx.backups.reader(&stored.object_key).await?);
    let entries = {
        let mut plain = crypt::decrypting(&identity, &mut read, &what).await?;
        tools.list_archive(&mut plain).await?
    };
    if !read.is_stored(&stored.backup) {
        return Err(ControlError::BackupUnreadable(format!(
            "{what}: the store returned other bytes than were stored"
        )));
    }
    if entries == 0 {
        return Err(ControlError::BackupUnreadable(format!(
            "{what} holds an empty archive"
        )));
    }
    let expires_in = cx.limits()?.backups.as_ref().and_then(|b| b.keep_for);
    cx.store
        .backup_completed(stored.backup.id, expires_in)
        .await?;
    metrics::counter!("tenancy_backups_total", "outcome" => "completed").increment(1);
    Ok(())
}

/// One of the server's backup slots (see [`crate::backups::slot`]).
pub(super) async fn slot(
    cx: &StepContext<'_>,
    server: &tenancy_core::ServerId,
) -> Result<RegistryLock, ControlError> {
    crate::backups::slot(cx.store, cx.config.backups.per_server, server).await
}

/// The tenant's backup key's public half (made on its first backup) and the break-glass key.
async fn recipients(cx: &StepContext<'_>) -> Result<Vec<age::pq::Recipient>, ControlError> {
    let org_id = &cx.tenant.org_id;
    let recipient = match cx.store.backup_key(org_id).await? {
        Some((_, recipient)) => recipient,
        None => {
            let made = crypt::new_backup_key(cx.keyring, org_id);
            let (_, recipient) = cx
                .store
                .insert_backup_key(org_id, &made.sealed, &made.recipient)
                .await?;
            recipient
        }
    };
    let mut recipients = vec![crypt::recipient(&recipient)?];
    if let Some(break_glass) = &cx.config.backups.break_glass_recipient {
        recipients.push(crypt::recipient(break_glass)?);
    }
    Ok(recipients)
}

/// The tenant's backup key (a purged tenant's is gone: its backups no longer decrypt).
pub(super) async fn identity(cx: &StepContext<'_>) -> Result<age::pq::Identity, ControlError> {
    let org_id = &cx.tenant.org_id;
    let (sealed, _) = cx.store.backup_key(org_id).await?.ok_or_else(|| {
        ControlError::BackupUnreadable(format!("tenant {org_id} has no backup key"))
    })?;
    crypt::open_backup_key(cx.keyring, org_id, &sealed)
}

pub(super) async fn tools(cx: &StepContext<'_>) -> Result<PgTools, ControlError> {
    PgTools::find(cx.config.moves.pg_bin_dir.as_deref()).await
}

/// A backup that gives up leaves no object: what it stored is deleted, its row marked failed.
pub(super) async fn abandon(cx: &StepContext<'_>, why: &ControlError) -> Result<(), ControlError> {
    for stored in cx.store.operation_backups(cx.op.id).await? {
        if stored.backup.state == BackupState::Running {
            cx.backups.delete(&stored.object_key).await?;
            metrics::counter!("tenancy_backups_total", "outcome" => "failed").increment(1);
        }
    }
    cx.store.backups_failed(cx.op.id, &why.to_string()).await
}
