//! The WAL archive: one keeper per archived server across replicas (see
//! `archive::keeper`), the window a point-in-time restore reaches, and each server's archive
//! status.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tenancy_core::{OrgId, RestoreWindow, ServerId, WalStatus};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use super::Engine;
use crate::archive::keeper::{self, Keeper};
use crate::archive::scratch;
use crate::error::ControlError;
use crate::store::LockName;

/// How long a replica waits before trying again to become a server's keeper.
const KEEPER_RETRY: Duration = Duration::from_secs(5);

impl Engine {
    /// The moments a point-in-time restore of the tenant reaches now (see [`RestoreWindow`]):
    /// back from now through the servers it was on (the move history), as long as each one's
    /// archive covers the time it was there.
    pub async fn restore_window(&self, org_id: &OrgId) -> Result<RestoreWindow, ControlError> {
        let tenant = self.tenant(org_id).await?;
        let mut window = RestoreWindow {
            org_id: org_id.clone(),
            server_id: tenant.server_id.clone(),
            earliest: None,
            latest: None,
        };
        if tenant.server_id.is_none() {
            return Ok(window);
        }
        for (i, (server, since)) in self
            .store()
            .placements(&tenant)
            .await?
            .into_iter()
            .enumerate()
        {
            if self.config().server_archive(&server).is_none() {
                break;
            }
            let state = self.store().archive_state(&server).await?;
            if i == 0 {
                window.latest = state.latest;
            }
            let Some(earliest) = state.earliest else {
                break;
            };
            window.earliest = Some(earliest.max(since));
            if earliest > since {
                break;
            }
        }
        window.latest = window
            .latest
            .filter(|latest| window.earliest.is_some_and(|e| e < *latest));
        Ok(window)
    }

    /// A moment a restore may ask for: inside the window, or after its latest moment but not
    /// in the future (the restore forces a WAL switch and waits for the archive).
    pub(super) async fn check_moment(
        &self,
        org_id: &OrgId,
        moment: DateTime<Utc>,
    ) -> Result<(), ControlError> {
        let window = self.restore_window(org_id).await?;
        let refuse = |why: String| ControlError::OutsideRestoreWindow {
            detail: why,
            window: Box::new(window.clone()),
        };
        let Some(earliest) = window.earliest else {
            return Err(refuse(match &window.server_id {
                Some(server) if self.config().server_archive(server).is_some() => format!(
                    "the WAL archive of server {server} holds no base backup with WAL after it yet"
                ),
                Some(server) => {
                    format!("the WAL of server {server} is not archived (set wal_archive for it)")
                }
                None => format!("tenant {org_id} has no database"),
            }));
        };
        if moment < earliest {
            return Err(refuse(format!(
                "{moment} is before the earliest moment reachable, {earliest}"
            )));
        }
        if moment > Utc::now() {
            return Err(refuse(format!("{moment} is in the future")));
        }
        Ok(())
    }

    /// How the WAL archive of every configured server stands.
    pub async fn wal_status(&self) -> Result<Vec<WalStatus>, ControlError> {
        let mut all = Vec::new();
        for server in &self.config().servers {
            let state = self.store().archive_state(&server.id).await?;
            let lag = match self.admins().get(&server.id).await {
                Ok(admin) if server.wal_archive.is_some() => {
                    keeper::lag(&admin, state.archived_to).await
                }
                _ => None,
            };
            all.push(WalStatus {
                server_id: server.id.clone(),
                enabled: server.wal_archive.is_some(),
                timeline: state.timeline,
                archived_to: state.archived_to.map(|lsn| lsn.to_string()),
                last_archived_at: state.last.map(|(_, at)| at),
                lag_bytes: lag,
                last_base_backup_at: state.last_base_backup_at,
                base_backups: state.base_backups,
                segments: state.segments,
                gaps: state.gaps,
                earliest: state.earliest,
                latest: state.latest,
            });
        }
        Ok(all)
    }

    /// Removes scratch instances no claim of a running restore owns: of a restore no longer
    /// running, or of an earlier claim of one (its worker died or lost its lease).
    pub async fn sweep_scratch(&self) -> Result<usize, ControlError> {
        let dir = &self.config().wal_archive.scratch_dir;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let Some((op, attempt)) = scratch::Scratch::owner_of(&entry.path()) else {
                continue;
            };
            let owned = self.store().operation(op).await?.is_some_and(|o| {
                o.state == tenancy_core::OperationState::Running && o.attempts == attempt
            });
            if !owned {
                scratch::remove_dir(self.config(), &entry.path()).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Keeps `server`'s WAL archive whenever this replica holds its lock.
    pub(super) fn spawn_keeper(
        &self,
        server: ServerId,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        let span = info_span!("wal_keeper", server = %server);
        tokio::spawn(
            async move {
                loop {
                    match engine.keep_once(&server, &cancel).await {
                        Ok(()) if cancel.is_cancelled() => return,
                        Ok(()) => {}
                        Err(e) => warn!(error = %e, "WAL keeper stopped; trying again"),
                    }
                    tokio::select! {
                        () = tokio::time::sleep(KEEPER_RETRY) => {}
                        () = cancel.cancelled() => return,
                    }
                }
            }
            .instrument(span),
        )
    }

    async fn keep_once(
        &self,
        server: &ServerId,
        cancel: &CancellationToken,
    ) -> Result<(), ControlError> {
        let Some(archive) = self.config().server_archive(server).cloned() else {
            return Ok(());
        };
        let Some(mut lock) = self.try_lock(&LockName::WalKeeper(server.clone())).await? else {
            return Ok(());
        };
        let keeper = Keeper {
            store: self.store().clone(),
            backups: self.inner.backups.clone(),
            keyring: self.inner.keyring.clone(),
            config: self.inner.config.clone(),
            admin: self.admins().get(server).await?,
            archive,
            name: self.inner.instance.clone(),
        };
        let kept = keeper.run(&mut lock, cancel).await;
        lock.release().await;
        kept
    }
}
