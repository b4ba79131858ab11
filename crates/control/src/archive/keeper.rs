//! The WAL keeper of one server: while it holds the server's registry lock
//! (`LockName::WalKeeper`), it supervises `pg_receivewal` streaming the server's WAL into a
//! local spool directory, stores every completed segment (encrypted to the server's archive
//! key) and records it, then advances the archive's replication slot past it: the server keeps
//! every segment until it is stored, across a restart of the keeper or a takeover by another
//! replica. It records marks, takes base backups when due and deletes what is past the window.
//!
//! Where streaming starts: `pg_receivewal` starts after the newest complete segment in its
//! directory. The keeper empties the directory and leaves there an empty (sparse) file named
//! after the newest segment the catalog holds, so that streaming resumes right after what is
//! stored, whatever this replica's disk held before.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy_core::ServerId;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::wal::{Lsn, SLOT, Segments, segment_key};
use crate::backups::{BackupStore, crypt};
use crate::config::{Config, ServerArchive};
use crate::error::ControlError;
use crate::pgadmin::ServerAdmin;
use crate::pgtools::{PgTools, WAL_KEEPER_APP};
use crate::secrets::Keyring;
use crate::store::{RegistryLock, Store};

/// How often the keeper looks for completed segments.
const TICK: Duration = Duration::from_secs(1);

/// How often it looks whether a base backup is due.
const LOOK_EVERY: Duration = Duration::from_secs(10);

/// What a keeper works with.
#[derive(Clone)]
pub struct Keeper {
    pub store: Store,
    pub backups: BackupStore,
    pub keyring: Keyring,
    pub config: Arc<Config>,
    pub admin: ServerAdmin,
    pub archive: ServerArchive,
    /// Who stores segments (the process's instance name), recorded with each.
    pub name: String,
}

impl Keeper {
    fn server(&self) -> &ServerId {
        self.admin.id()
    }

    /// This process's spool for the server (a keeper before it, here or in another process
    /// sharing the directory, had its own).
    fn spool(&self) -> PathBuf {
        self.config
            .wal_archive
            .spool_dir
            .join(self.server().as_str())
            .join(&self.name)
    }

    /// Keeps the archive until `cancel`, the lock is lost, or something fails (the caller
    /// starts again a little later).
    pub async fn run(
        &self,
        lock: &mut RegistryLock,
        cancel: &CancellationToken,
    ) -> Result<(), ControlError> {
        let server = self.server().clone();
        for (_, key) in self.store.abandoned_base_backups(&server).await? {
            self.backups.delete(&key).await?;
        }
        let facts = self.admin.wal_facts().await?;
        let restart = self.admin.ensure_archive_slot(SLOT).await?;
        let recipients = self.recipients().await?;
        let tools = PgTools::find(self.config.moves.pg_bin_dir.as_deref()).await?;
        let segments = facts.segments;
        let timeline = facts.timeline;
        let spool = self.spool();
        let mut last = self
            .store
            .last_segment(
                &server,
                i32::try_from(timeline).map_err(ControlError::corrupt)?,
            )
            .await?
            .map(|s| u64::try_from(s).unwrap_or(0));
        info!(%server, timeline, last_archived = ?last, slot_from = %restart, "WAL keeper started");
        let mut receiver = None;
        let mut base_backup: Option<tokio::task::JoinHandle<()>> = None;
        let mut next_mark = Instant::now();
        let mut next_expiry = Instant::now();
        let mut next_look = Instant::now();
        loop {
            if receiver.is_none() {
                // A keeper killed with no chance to stop its pg_receivewal left it streaming.
                let ended = self.admin.end_wal_streams(WAL_KEEPER_APP).await?;
                if ended > 0 {
                    warn!(%server, ended, "ended WAL streams an earlier keeper left");
                }
                // Segments stored so far end where the slot may resume; before the first, the
                // slot's own start. The seed itself is never stored.
                let seed = last.unwrap_or_else(|| segments.of(restart).saturating_sub(1));
                seed_spool(&spool, segments, timeline, seed)?;
                last = Some(seed);
                receiver = Some(tools.receive_wal(self.admin.config(), &spool)?);
            }
            let running = receiver.as_mut().expect("started above");
            tokio::select! {
                () = cancel.cancelled() => {
                    let _ = running.child.start_kill();
                    if let Some(task) = base_backup.take() {
                        task.abort();
                    }
                    return Ok(());
                }
                status = running.child.wait() => {
                    let mut ended = receiver.take().expect("running");
                    let outcome = PgTools::finish("pg_receivewal", &mut ended.child).await;
                    warn!(%server, ?status, error = ?outcome.err(), "pg_receivewal stopped; restarting it");
                    tokio::time::sleep(TICK).await;
                }
                () = tokio::time::sleep(TICK) => {}
            }
            if !lock.is_held().await {
                if let Some(mut running) = receiver.take() {
                    let _ = running.child.kill().await;
                }
                return Err(ControlError::LeaseLost);
            }
            self.store_completed(&spool, segments, &recipients, &mut last)
                .await?;
            if Instant::now() >= next_mark {
                next_mark = Instant::now() + self.config.wal_archive.mark_every;
                let (at, lsn) = self.admin.wal_mark().await?;
                self.store.insert_mark(&server, at, lsn).await?;
            }
            if Instant::now() < next_look {
                continue;
            }
            next_look = Instant::now() + LOOK_EVERY;
            if base_backup.as_ref().is_none_or(|task| task.is_finished())
                && self.base_backup_due().await?
            {
                let keeper = self.clone();
                let recipients = recipients.clone();
                let tools = tools.clone();
                base_backup = Some(tokio::spawn(async move {
                    if let Err(e) = keeper.base_backup(&tools, &recipients).await {
                        warn!(server = %keeper.server(), error = %e, "base backup failed; trying again");
                    }
                }));
            }
            if Instant::now() >= next_expiry {
                next_expiry = Instant::now() + Duration::from_secs(60);
                self.expire().await?;
            }
        }
    }

    /// Stores every completed segment in the spool after `last`, in order; records each, lets
    /// the server recycle it, and leaves it as the spool's (sparse) seed.
    async fn store_completed(
        &self,
        spool: &Path,
        segments: Segments,
        recipients: &[age::pq::Recipient],
        last: &mut Option<u64>,
    ) -> Result<(), ControlError> {
        let server = self.server();
        let mut ready: Vec<(u32, u64, String)> = std::fs::read_dir(spool)
            .map_err(|e| spool_error(spool, &e))?
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let (timeline, segno) = segments.parse(&name)?;
                Some((timeline, segno, name))
            })
            .filter(|(_, segno, _)| last.is_none_or(|l| *segno > l))
            .collect();
        ready.sort();
        for (timeline, segno, name) in ready {
            if let Some(previous) = *last
                && segno != previous + 1
            {
                warn!(%server, from = previous + 1, to = segno - 1, "WAL gap: segments missing from the archive");
                metrics::counter!("tenancy_wal_gaps_total", "server" => server.to_string())
                    .increment(1);
            }
            let path = spool.join(&name);
            let key = segment_key(server, &name);
            let mut upload = self.backups.writer(&key);
            let stored = async {
                let mut file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| spool_error(&path, &e))?;
                let mut encrypting = crypt::encrypting(recipients, &mut upload).await?;
                tokio::io::copy(&mut file, &mut encrypting)
                    .await
                    .map_err(|e| ControlError::BackupStore(format!("storing {name}: {e}")))?;
                encrypting
                    .shutdown()
                    .await
                    .map_err(|e| ControlError::BackupStore(format!("storing {name}: {e}")))?;
                Ok::<_, ControlError>(())
            }
            .await;
            if let Err(e) = stored {
                upload.abort().await;
                return Err(e);
            }
            let (stored_bytes, sha256) = upload.stored();
            let end = segments.end(segno);
            self.store
                .segment_archived(
                    server,
                    i32::try_from(timeline).map_err(ControlError::corrupt)?,
                    i64::try_from(segno).map_err(ControlError::corrupt)?,
                    end,
                    &key,
                    (stored_bytes, &sha256),
                    &self.name,
                )
                .await?;
            self.admin.advance_archive_slot(SLOT, end).await?;
            metrics::counter!("tenancy_wal_segments_archived_total", "server" => server.to_string())
                .increment(1);
            if let Some(previous) = *last {
                let _ = std::fs::remove_file(spool.join(segments.name(timeline, previous)));
            }
            make_sparse(&path, segments.bytes)?;
            *last = Some(segno);
        }
        Ok(())
    }

    /// Whether a base backup is due: there is none, the newest is older than
    /// `base_backup_every`, or none is inside the unbroken run of WAL (a gap cut the window
    /// off) and the newest is not so recent that its first segment may still be on its way.
    async fn base_backup_due(&self) -> Result<bool, ControlError> {
        let state = self.store.archive_state(self.server()).await?;
        let every = chrono::Duration::from_std(self.archive.base_backup_every)
            .map_err(ControlError::corrupt)?;
        let settle = chrono::Duration::from_std(LOOK_EVERY * 2).map_err(ControlError::corrupt)?;
        let now = chrono::Utc::now();
        Ok(match state.last_base_backup_at {
            None => true,
            Some(at) => at + every <= now || (state.earliest.is_none() && at + settle <= now),
        })
    }

    /// Streams `pg_basebackup`'s tar through encryption into the store.
    async fn base_backup(
        &self,
        tools: &PgTools,
        recipients: &[age::pq::Recipient],
    ) -> Result<(), ControlError> {
        let server = self.server();
        let started = Instant::now();
        let facts = self.admin.wal_facts().await?;
        let databases = self.admin.database_sizes().await?;
        let (id, key) = self
            .store
            .base_backup_started(
                server,
                i32::try_from(facts.timeline).map_err(ControlError::corrupt)?,
                i64::try_from(facts.segments.of(facts.insert)).map_err(ControlError::corrupt)?,
                &databases,
            )
            .await?;
        let mut upload = self.backups.writer(&key);
        let written = async {
            let mut running = tools.base_backup(self.admin.config())?;
            let mut from = running.child.stdout.take().expect("piped");
            let mut encrypting = crypt::encrypting(recipients, &mut upload).await?;
            let copied = tokio::io::copy(&mut from, &mut encrypting).await;
            if copied.is_err() {
                let _ = running.child.start_kill();
            }
            PgTools::finish("pg_basebackup", &mut running.child).await?;
            let size = copied
                .map_err(|e| ControlError::BackupStore(format!("storing a base backup: {e}")))?;
            encrypting
                .shutdown()
                .await
                .map_err(|e| ControlError::BackupStore(format!("storing a base backup: {e}")))?;
            Ok::<_, ControlError>(size)
        }
        .await;
        match written {
            Ok(size) => {
                let (stored, sha256) = upload.stored();
                self.store
                    .base_backup_ended(id, Ok((size, stored, &sha256)))
                    .await?;
                info!(%server, %id, size, took_ms = started.elapsed().as_millis() as u64, "base backup stored");
                metrics::counter!("tenancy_wal_base_backups_total", "server" => server.to_string())
                    .increment(1);
                Ok(())
            }
            Err(e) => {
                upload.abort().await;
                let _ = self.backups.delete(&key).await;
                self.store
                    .base_backup_ended(id, Err(&e.to_string()))
                    .await?;
                Err(e)
            }
        }
    }

    /// Deletes base backups and segments past the window (objects first, then their rows).
    async fn expire(&self) -> Result<(), ControlError> {
        let keep = chrono::Duration::from_std(self.archive.keep).map_err(ControlError::corrupt)?;
        let expired = self
            .store
            .expired_archive(self.server(), chrono::Utc::now() - keep)
            .await?;
        if expired.base_backups.is_empty() && expired.segments.is_empty() {
            return Ok(());
        }
        for (_, key) in &expired.base_backups {
            self.backups.delete(key).await?;
        }
        for (_, _, key) in &expired.segments {
            self.backups.delete(key).await?;
        }
        self.store.forget_expired(self.server(), &expired).await?;
        info!(
            server = %self.server(),
            base_backups = expired.base_backups.len(),
            segments = expired.segments.len(),
            "WAL archive past its window deleted"
        );
        Ok(())
    }

    /// The server's archive key's public half (made on first use) and the break-glass key.
    pub async fn recipients(&self) -> Result<Vec<age::pq::Recipient>, ControlError> {
        let server = self.server();
        let recipient = match self.store.archive_key(server).await? {
            Some((_, recipient)) => recipient,
            None => {
                let made = crypt::new_server_key(&self.keyring, server);
                self.store
                    .insert_archive_key(server, &made.sealed, &made.recipient)
                    .await?
            }
        };
        let mut recipients = vec![crypt::recipient(&recipient)?];
        if let Some(break_glass) = &self.config.backups.break_glass_recipient {
            recipients.push(crypt::recipient(break_glass)?);
        }
        Ok(recipients)
    }
}

/// Empties the spool but for an empty segment file named `seed`: `pg_receivewal` streams from
/// the segment after it.
fn seed_spool(
    spool: &Path,
    segments: Segments,
    timeline: u32,
    seed: u64,
) -> Result<(), ControlError> {
    if spool.exists() {
        std::fs::remove_dir_all(spool).map_err(|e| spool_error(spool, &e))?;
    }
    std::fs::create_dir_all(spool).map_err(|e| spool_error(spool, &e))?;
    let path = spool.join(segments.name(timeline, seed));
    std::fs::File::create(&path).map_err(|e| spool_error(&path, &e))?;
    make_sparse(&path, segments.bytes)
}

/// Leaves a segment file its full length (what `pg_receivewal` counts as complete) holding no
/// data.
fn make_sparse(path: &Path, bytes: u64) -> Result<(), ControlError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| spool_error(path, &e))?;
    file.set_len(0)
        .and_then(|()| file.set_len(bytes))
        .map_err(|e| spool_error(path, &e))
}

fn spool_error(path: &Path, e: &std::io::Error) -> ControlError {
    ControlError::Config(format!("WAL spool {}: {e}", path.display()))
}

/// Where a server's archive is now: the registry's catalog and, when it can be reached, how
/// far the server's WAL has gone beyond it.
pub async fn lag(admin: &ServerAdmin, archived_to: Option<Lsn>) -> Option<i64> {
    let facts = admin.wal_facts().await.ok()?;
    let to = archived_to?;
    i64::try_from(facts.insert.0.saturating_sub(to.0)).ok()
}
