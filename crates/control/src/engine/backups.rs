//! Backups and restores of one tenant: asking for them (operations do the work, see
//! `operations::backup` and `operations::restore`), the catalog, the export (a backup
//! decrypted as it streams), and what a purge erases.

use tenancy_core::{Backup, BackupKind, BackupState, ErrorCode, Operation, OrgId, RestoreSource};
use tokio::io::AsyncRead;
use tracing::{info, instrument, warn};
use uuid::Uuid;

use super::Engine;
use crate::backups::{BackupStore, Hashing, crypt};
use crate::error::ControlError;
use crate::pgadmin::{Contents, restoring_name};
use crate::pgtools::PgTools;
use crate::store::{Actor, LockName, StoredBackup};

/// Scheduled backups one round queues per tier at most (the next round queues more).
const SCHEDULED_PER_ROUND: i64 = 500;

/// What one round of the backup scheduler did.
#[derive(Debug, Default)]
pub struct BackupRound {
    /// Scheduled backups queued.
    pub queued: Vec<Operation>,
    /// Backups deleted past retention.
    pub expired: usize,
    /// Backups the restore drill verified, and how many of them were damaged.
    pub drilled: (usize, usize),
}

/// The longest page of backups a list returns.
pub const MAX_BACKUP_PAGE: i64 = 200;

/// A backup's export: the plain `pg_dump` archive, decrypted as it is read. A stored object
/// that does not authenticate fails the read where it is detected; no byte past a bad chunk is
/// returned.
pub struct Export {
    pub backup: Backup,
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
}

impl Engine {
    pub fn backup_store(&self) -> &BackupStore {
        &self.inner.backups
    }

    /// Queues a backup of the tenant (`manual` unless the scheduler asks).
    #[instrument(skip(self, actor), fields(%org_id))]
    pub async fn request_backup(
        &self,
        org_id: &OrgId,
        kind: BackupKind,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        let op = self.store().request_backup(org_id, kind, actor).await?;
        info!(op_id = %op.id, %kind, "backup queued");
        Ok(op)
    }

    /// One page of the tenant's backups, newest first.
    pub async fn backups(
        &self,
        org_id: &OrgId,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Backup>, ControlError> {
        self.tenant(org_id).await?;
        self.store()
            .backups(org_id, after, limit.clamp(1, MAX_BACKUP_PAGE))
            .await
    }

    /// The tenant's backup `id`; another tenant's is not found.
    pub async fn backup(&self, org_id: &OrgId, id: Uuid) -> Result<Backup, ControlError> {
        Ok(self.stored_backup(org_id, id).await?.backup)
    }

    async fn stored_backup(&self, org_id: &OrgId, id: Uuid) -> Result<StoredBackup, ControlError> {
        self.store()
            .backup(org_id, id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("backup {id} of tenant {org_id}"),
            })
    }

    /// The export of the tenant's completed backup `id`, audited (who, which backup). The
    /// object's header is read and its key checked before this returns.
    #[instrument(skip(self, actor), fields(%org_id, %id))]
    pub async fn export_backup(
        &self,
        org_id: &OrgId,
        id: Uuid,
        actor: &Actor,
    ) -> Result<Export, ControlError> {
        let stored = self.stored_backup(org_id, id).await?;
        if stored.backup.state != BackupState::Completed {
            return Err(ControlError::conflict(
                ErrorCode::InvalidState,
                format!(
                    "backup {id} is {}; only a completed one can be downloaded",
                    stored.backup.state
                ),
            ));
        }
        let identity = self.backup_identity(org_id).await?;
        let object = self.inner.backups.reader(&stored.object_key).await?;
        let reader = crypt::decrypting(&identity, object, &format!("backup {id}")).await?;
        self.store()
            .audit_backups(
                actor,
                "tenant.backup_download",
                org_id,
                serde_json::json!({ "backup_id": id, "size_bytes": stored.backup.size_bytes }),
            )
            .await?;
        metrics::counter!("tenancy_backup_downloads_total").increment(1);
        Ok(Export {
            backup: stored.backup,
            reader: Box::new(reader),
        })
    }

    /// Reads the tenant's backup `id` back from the store: the bytes stored (SHA-256),
    /// decrypting and authenticating to the end. Returns the archive's bytes.
    pub async fn check_backup(&self, org_id: &OrgId, id: Uuid) -> Result<u64, ControlError> {
        let stored = self.stored_backup(org_id, id).await?;
        let identity = self.backup_identity(org_id).await?;
        let what = format!("backup {id}");
        let mut read = Hashing::new(self.inner.backups.reader(&stored.object_key).await?);
        let plain_bytes = {
            let mut plain = crypt::decrypting(&identity, &mut read, &what).await?;
            tokio::io::copy(&mut plain, &mut tokio::io::sink())
                .await
                .map_err(|e| ControlError::BackupUnreadable(format!("{what}: {e}")))?
        };
        if !read.is_stored(&stored.backup) {
            return Err(ControlError::BackupUnreadable(format!(
                "{what}: the store holds other bytes than were stored"
            )));
        }
        Ok(plain_bytes)
    }

    /// Restores the tenant's backup `id` into a scratch database on the tenant's server,
    /// compares its tables' rows and large objects with what the catalog counted when it was
    /// taken, drops the scratch database, and records the result. Returns whether the backup is
    /// whole, and what was found.
    #[instrument(skip(self), fields(%org_id, %id))]
    pub async fn verify_backup(
        &self,
        org_id: &OrgId,
        id: Uuid,
    ) -> Result<(bool, String), ControlError> {
        let stored = self.stored_backup(org_id, id).await?;
        let tenant = self.tenant(org_id).await?;
        let server = tenant.server_id.clone().ok_or_else(|| {
            ControlError::conflict(
                ErrorCode::NotPlaced,
                format!("tenant {org_id} has no server to verify on"),
            )
        })?;
        let admin = self.admins().get(&server).await?;
        let _slot =
            crate::backups::slot(self.store(), self.config().backups.per_server, &server).await?;
        let tools = PgTools::find(self.config().moves.pg_bin_dir.as_deref()).await?;
        let identity = self.backup_identity(org_id).await?;
        let scratch = restoring_name(Uuid::new_v4());
        admin
            .create_restore_target(&scratch, &tenant.db_name, org_id)
            .await?;
        let checked = async {
            let what = format!("backup {id}");
            let object = self.inner.backups.reader(&stored.object_key).await?;
            let mut plain = crypt::decrypting(&identity, object, &what).await?;
            tools
                .restore_from(admin.config(), scratch.as_str(), &mut plain, false)
                .await?;
            admin.contents(&scratch).await
        }
        .await;
        admin.drop_restore_target(&scratch, org_id).await?;
        let (ok, found) = match checked {
            Ok(found) => {
                let expected = Contents {
                    rows: stored.backup.row_counts.clone().unwrap_or_default(),
                    large_objects: stored.backup.large_objects.unwrap_or(0),
                };
                match crate::operations::compare_contents(&expected, &found) {
                    Ok(summary) => (true, summary),
                    Err(why) => (false, why),
                }
            }
            Err(e) if e.code() == ErrorCode::BackupUnreadable => (false, e.to_string()),
            Err(e) if matches!(e, ControlError::Copy(_)) => (false, e.to_string()),
            Err(e) => return Err(e),
        };
        self.store().backup_verified(id, ok, &found).await?;
        metrics::counter!("tenancy_backup_verifications_total",
            "outcome" => if ok { "whole" } else { "damaged" })
        .increment(1);
        Ok((ok, found))
    }

    /// The newest completed backup of each of these tenants (every tenant when empty).
    pub async fn latest_backups(&self, org_ids: &[OrgId]) -> Result<Vec<Backup>, ControlError> {
        self.store().latest_backups(org_ids).await
    }

    async fn backup_identity(&self, org_id: &OrgId) -> Result<age::pq::Identity, ControlError> {
        let (sealed, _) = self.store().backup_key(org_id).await?.ok_or_else(|| {
            ControlError::BackupUnreadable(format!("tenant {org_id} has no backup key"))
        })?;
        crypt::open_backup_key(&self.inner.keyring, org_id, &sealed)
    }

    /// Queues a restore of the tenant, in place, from its completed backup `backup_id`.
    #[instrument(skip(self, actor), fields(%org_id, ?source))]
    pub async fn request_restore(
        &self,
        org_id: &OrgId,
        source: RestoreSource,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.check_restore_source(org_id, source).await?;
        let op = self.store().request_restore(org_id, source, actor).await?;
        info!(op_id = %op.id, "restore queued");
        Ok(op)
    }

    /// Copies the tenant's completed backup `backup_id` into a new tenant `into` named `name`
    /// (onboarded here with the source's tier and region; provisioned like any other), and
    /// queues the copy, which waits for that provisioning. `into` must be new: an existing
    /// tenant is never overwritten with another's data (asking again after a copy was queued
    /// into it answers that copy).
    #[instrument(skip(self, name, actor), fields(%org_id, ?source, %into))]
    pub async fn request_restore_copy(
        &self,
        org_id: &OrgId,
        source: RestoreSource,
        into: &OrgId,
        name: tenancy_core::TenantName,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        if into == org_id {
            return Err(ControlError::conflict(
                ErrorCode::InvalidTarget,
                format!(
                    "tenant {into} is the backup's own: restore in place by leaving `into` out"
                ),
            ));
        }
        let tenant = self.tenant(org_id).await?;
        self.check_restore_source(org_id, source).await?;
        if let Some(op) = self.store().copy_into(into).await? {
            return Ok(op);
        }
        // Refused before anything is made when the source's backup lane is busy (a backup
        // under way): the copy would be refused after the onboarding otherwise.
        if let Some(busy) = self.store().open_backup(org_id).await? {
            return Err(ControlError::conflict(
                ErrorCode::OperationInProgress,
                format!("tenant {org_id} has a backup under way ({busy}); copy once it ended"),
            ));
        }
        let mut request = tenancy_core::CreateTenant::new(into.clone(), name);
        request.tier = Some(tenant.tier.clone());
        request.region = Some(tenant.region.clone());
        match self.onboard(request, actor).await? {
            super::Onboarded::Created { .. } => {}
            super::Onboarded::Existing { .. } => {
                return Err(ControlError::conflict(
                    ErrorCode::TenantExists,
                    format!(
                        "tenant {into} exists already: a backup is copied into a new tenant only"
                    ),
                ));
            }
        }
        let op = self
            .store()
            .request_restore_copy(org_id, source, into, actor)
            .await?;
        info!(op_id = %op.id, "copy into a new tenant queued");
        Ok(op)
    }

    /// A backup to restore from must be completed; a moment must be in the tenant's window.
    async fn check_restore_source(
        &self,
        org_id: &OrgId,
        source: RestoreSource,
    ) -> Result<(), ControlError> {
        match source {
            RestoreSource::Backup(backup_id) => {
                let stored = self.stored_backup(org_id, backup_id).await?;
                if stored.backup.state != BackupState::Completed {
                    return Err(ControlError::conflict(
                        ErrorCode::InvalidState,
                        format!(
                            "backup {backup_id} is {}; only a completed one restores",
                            stored.backup.state
                        ),
                    ));
                }
                Ok(())
            }
            RestoreSource::Moment(moment) => self.check_moment(org_id, moment).await,
        }
    }

    /// Re-seals every tenant's backup key and every server's WAL archive key sealed under
    /// another master key than the current one (the backups half of `tenantctl rekey`; the keys
    /// themselves, and so every stored backup and archive, stay as they are); returns how many
    /// were re-sealed.
    pub async fn reseal_backup_keys(&self) -> Result<usize, ControlError> {
        let keyring = &self.inner.keyring;
        let current = keyring.current().id().to_owned();
        let mut resealed = 0;
        for (org_id, sealed) in self.store().backup_keys_to_reseal(&current).await? {
            let again = crypt::reseal_backup_key(keyring, &org_id, &sealed)?;
            self.store()
                .reseal_backup_key(&org_id, &sealed.key_id, &again)
                .await?;
            resealed += 1;
        }
        for (server, sealed) in self.store().archive_keys_to_reseal(&current).await? {
            let again = crypt::reseal_server_key(keyring, &server, &sealed)?;
            self.store()
                .reseal_archive_key(&server, &sealed.key_id, &again)
                .await?;
            resealed += 1;
        }
        Ok(resealed)
    }

    /// One round of the backup scheduler, on the replica holding the schedule's registry lock
    /// (`None` on the others): queues a `scheduled` backup of every tenant due one by its tier,
    /// deletes the backups past their tier's retention (object, then catalog row, each
    /// audited), and sets the gauges of tenants past their interval.
    pub async fn backup_round(&self) -> Result<Option<BackupRound>, ControlError> {
        let Some(lock) = self.store().try_lock(&LockName::BackupSchedule).await? else {
            return Ok(None);
        };
        let scheduler = Actor::named("system:scheduler");
        let mut round = BackupRound::default();
        for (tier, limits) in &self.config().tiers {
            let Some(schedule) = &limits.backups else {
                continue;
            };
            for org_id in self
                .store()
                .due_backups(tier, schedule.interval, SCHEDULED_PER_ROUND)
                .await?
            {
                match self
                    .store()
                    .request_backup(&org_id, BackupKind::Scheduled, &scheduler)
                    .await
                {
                    Ok(op) => round.queued.push(op),
                    // A restore or a purge under way, or the tenant changed meanwhile: the
                    // next round sees it again.
                    Err(e)
                        if matches!(
                            e.code(),
                            ErrorCode::OperationInProgress | ErrorCode::InvalidState
                        ) => {}
                    Err(e) => warn!(%org_id, error = %e, "could not queue a scheduled backup"),
                }
            }
            for expired in self
                .store()
                .expired_backups(tier, schedule.keep, schedule.keep_for)
                .await?
            {
                self.inner.backups.delete(&expired.object_key).await?;
                self.store().forget_backup(expired.backup.id).await?;
                self.store()
                    .audit_backups(
                        &Actor::named("system:retention"),
                        "tenant.backup_expired",
                        &expired.backup.org_id,
                        serde_json::json!({
                            "backup_id": expired.backup.id,
                            "created_at": expired.backup.created_at,
                            "stored_bytes": expired.backup.stored_bytes,
                        }),
                    )
                    .await?;
                metrics::counter!("tenancy_backups_expired_total").increment(1);
                round.expired += 1;
            }
            let (past, oldest) = self.store().backup_lag(tier, schedule.interval).await?;
            metrics::gauge!("tenancy_tenants_past_backup_interval", "tier" => tier.to_string())
                .set(past as f64);
            metrics::gauge!("tenancy_backup_oldest_age_seconds", "tier" => tier.to_string())
                .set(oldest);
        }
        round.drilled = self.drill().await?;
        lock.release().await;
        Ok(Some(round))
    }

    /// The restore drill, when `[backups] drill_every` has passed since the last verification:
    /// `drill_sample` tenants' newest backups, chosen at random, verified. Returns how many
    /// were, and how many of those were damaged (also logged and counted).
    async fn drill(&self) -> Result<(usize, usize), ControlError> {
        use rand::seq::SliceRandom;
        let backups = &self.config().backups;
        let Some(every) = backups.drill_every else {
            return Ok((0, 0));
        };
        let due = self.store().last_verification().await?.is_none_or(|at| {
            chrono::Utc::now() - at > chrono::Duration::from_std(every).unwrap_or_default()
        });
        if !due {
            return Ok((0, 0));
        }
        let mut sample = self.latest_backups(&[]).await?;
        sample.shuffle(&mut rand::rng());
        sample.truncate(backups.drill_sample);
        let mut damaged = 0;
        for backup in &sample {
            match self.verify_backup(&backup.org_id, backup.id).await {
                Ok((true, _)) => {}
                Ok((false, found)) => {
                    damaged += 1;
                    warn!(org_id = %backup.org_id, backup_id = %backup.id, %found,
                        "restore drill: the backup is damaged");
                }
                Err(e) => warn!(org_id = %backup.org_id, backup_id = %backup.id, error = %e,
                    "restore drill: could not verify"),
            }
        }
        Ok((sample.len(), damaged))
    }

    /// Drops the databases restores replaced once their retention ran out (the maintenance
    /// loop does this every `reconcile_interval`).
    pub async fn drop_replaced_databases(&self) -> Result<(), ControlError> {
        for kept in self.store().replaced_databases_due().await? {
            let dropped = async {
                self.admins()
                    .get(&kept.server_id)
                    .await?
                    .drop_retained(&kept.name)
                    .await?;
                self.store()
                    .replaced_database_dropped(kept.operation_id)
                    .await
            }
            .await;
            match dropped {
                Ok(()) => info!(server_id = %kept.server_id, db_name = %kept.name,
                    "database a restore replaced dropped after retention"),
                Err(e) => warn!(server_id = %kept.server_id, db_name = %kept.name, error = %e,
                    "could not drop a database a restore replaced"),
            }
        }
        Ok(())
    }
}
