//! A scratch PostgreSQL instance recovered from a server's WAL archive to a moment: the
//! newest base backup ended before the moment is unpacked (decrypted as it streams) into a
//! private directory, the archived segments up to the first mark after the moment are put in
//! its `pg_wal`, and PostgreSQL recovers to exactly the moment (`recovery_target_time`, then
//! promotes). It listens on no network address: only on a Unix socket inside its own directory
//! (mode 0700), so nothing else on the machine reaches it.
//!
//! Cheaper than a whole server: the files of other tenants' databases are left out as sparse
//! files of their size (what pgBackRest's `--db-include` does). Recovery writes a full-page
//! image before it changes any page for the first time after the base backup's checkpoint, so
//! those databases come out of recovery unusable but recovery itself, and every other
//! database, is whole. Replay still reads the whole server's WAL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use tenancy_core::ServerId;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tracing::{info, warn};
use uuid::Uuid;

use super::wal::{Lsn, Segments};
use crate::backups::{BackupStore, Hashing, crypt};
use crate::config::{Config, ServerConfig};
use crate::error::ControlError;
use crate::pgadmin::ServerAdmin;
use crate::store::{BaseBackup, Store};

/// Disk kept free beside what a recovery needs.
const HEADROOM: u64 = 256 << 20;

/// A running scratch instance; [`Scratch::remove`] stops it and deletes its directory.
pub struct Scratch {
    dir: PathBuf,
    bin: PathBuf,
    run_as: Option<nix::unistd::User>,
    /// Admin connections to it (as the source server's admin, over its socket).
    pub admin: ServerAdmin,
}

/// What a recovery starts from.
pub struct Plan {
    pub base: BaseBackup,
    pub timeline: u32,
    pub segments: Segments,
    /// Segments `from..=to` of the base backup's timeline.
    pub from: u64,
    pub to: u64,
    /// Databases whose files are left out (the other tenants').
    pub left_out: BTreeSet<u32>,
    /// Bytes the recovery writes to disk.
    pub needs: u64,
}

impl Plan {
    /// Plans the recovery of `source` to `moment` from `base`, the WAL reaching `through`
    /// (where the first mark after the moment ends), leaving out the databases named
    /// `others`.
    pub fn new(
        base: BaseBackup,
        segments: Segments,
        through: Lsn,
        others: &BTreeSet<String>,
    ) -> Result<Self, ControlError> {
        let timeline = u32::try_from(base.timeline).map_err(ControlError::corrupt)?;
        let from = u64::try_from(base.start_segno).map_err(ControlError::corrupt)?;
        let to = segments.of(through);
        let mut left_out = BTreeSet::new();
        let mut skipped = 0u64;
        for db in base.databases.as_array().into_iter().flatten() {
            let (Some(name), Some(oid), Some(bytes)) = (
                db["name"].as_str(),
                db["oid"].as_u64(),
                db["bytes"].as_u64(),
            ) else {
                continue;
            };
            if others.contains(name) {
                left_out.insert(u32::try_from(oid).map_err(ControlError::corrupt)?);
                skipped += bytes;
            }
        }
        let size = u64::try_from(base.size_bytes).map_err(ControlError::corrupt)?;
        let needs = size.saturating_sub(skipped) + (to + 1 - from) * segments.bytes;
        Ok(Self {
            base,
            timeline,
            segments,
            from,
            to,
            left_out,
            needs,
        })
    }
}

impl Scratch {
    /// The directory of the scratch instance of claim `attempt` of operation `op`: a claim of
    /// its own, so that a worker that lost its lease (and runs on to its next fence) and the
    /// one that took over never touch each other's instance.
    pub fn dir_of(config: &Config, op: Uuid, attempt: i32) -> PathBuf {
        config
            .wal_archive
            .scratch_dir
            .join(format!("{op}.{attempt}"))
    }

    /// The operation and claim a scratch directory's name says it belongs to.
    pub fn owner_of(dir: &Path) -> Option<(Uuid, i32)> {
        let name = dir.file_name()?.to_str()?;
        let (op, attempt) = name.split_once('.')?;
        Some((op.parse().ok()?, attempt.parse().ok()?))
    }

    /// Recovers `source` as `plan` says to `moment` in a fresh scratch instance of operation
    /// `op` (one left by an earlier attempt is removed first).
    #[allow(clippy::too_many_arguments)]
    pub async fn recover(
        config: &Config,
        store: &Store,
        backups: &BackupStore,
        identity: &age::pq::Identity,
        source: &ServerConfig,
        plan: &Plan,
        moment: DateTime<Utc>,
        op: Uuid,
        attempt: i32,
    ) -> Result<Self, ControlError> {
        let dir = absolute(&Self::dir_of(config, op, attempt))?;
        remove_dir(config, &dir).await;
        let recovered =
            Self::recover_in(config, store, backups, identity, source, plan, moment, &dir).await;
        if recovered.is_err() {
            // What a failed attempt unpacked is not kept for the next one.
            remove_dir(config, &dir).await;
        }
        recovered
    }

    #[allow(clippy::too_many_arguments)]
    async fn recover_in(
        config: &Config,
        store: &Store,
        backups: &BackupStore,
        identity: &age::pq::Identity,
        source: &ServerConfig,
        plan: &Plan,
        moment: DateTime<Utc>,
        dir: &Path,
    ) -> Result<Self, ControlError> {
        let dir = dir.to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, &e))?;
        set_private(&dir)?;
        check_disk(&dir, plan.needs)?;
        let socket = dir.join(".s.PGSQL.5432");
        if socket.as_os_str().len() > 100 {
            return Err(ControlError::Config(format!(
                "[wal_archive] scratch_dir is too long a path for a Unix socket ({})",
                socket.display()
            )));
        }
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| io_error(&data, &e))?;
        set_private(&data)?;
        let started = std::time::Instant::now();
        unpack_base(backups, identity, &plan.base, &data, &plan.left_out).await?;
        let wal = data.join("pg_wal");
        std::fs::create_dir_all(wal.join("archive_status")).map_err(|e| io_error(&wal, &e))?;
        let server = &source.id;
        let stored = store
            .archived_segments(
                server,
                plan.base.timeline,
                i64::try_from(plan.from).map_err(ControlError::corrupt)?,
                i64::try_from(plan.to).map_err(ControlError::corrupt)?,
            )
            .await?;
        if stored.len() as u64 != plan.to + 1 - plan.from {
            return Err(ControlError::conflict(
                tenancy_core::ErrorCode::OutsideRestoreWindow,
                format!(
                    "the archive of server {server} misses segments between {} and {}",
                    plan.segments.name(plan.timeline, plan.from),
                    plan.segments.name(plan.timeline, plan.to)
                ),
            ));
        }
        for segment in &stored {
            let segno = u64::try_from(segment.segno).map_err(ControlError::corrupt)?;
            let name = plan.segments.name(plan.timeline, segno);
            let mut read = Hashing::new(backups.reader(&segment.object_key).await?);
            {
                let mut plain = crypt::decrypting(identity, &mut read, &name).await?;
                let path = wal.join(&name);
                let mut file = tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| io_error(&path, &e))?;
                tokio::io::copy(&mut plain, &mut file)
                    .await
                    .map_err(|e| ControlError::BackupUnreadable(format!("segment {name}: {e}")))?;
            }
            if !read.is(segment.stored_bytes, &segment.sha256) {
                return Err(ControlError::BackupUnreadable(format!(
                    "segment {name}: the store returned other bytes than were stored"
                )));
            }
        }
        let restored_in = started.elapsed();
        std::fs::write(data.join("recovery.signal"), "").map_err(|e| io_error(&data, &e))?;
        let hba = dir.join("pg_hba.conf");
        std::fs::write(&hba, "local all all trust\n").map_err(|e| io_error(&hba, &e))?;
        let ident = dir.join("pg_ident.conf");
        std::fs::write(&ident, "").map_err(|e| io_error(&ident, &e))?;
        let version =
            std::fs::read_to_string(data.join("PG_VERSION")).map_err(|e| io_error(&data, &e))?;
        let bin = server_bin(config, version.trim())?;
        let run_as = run_as(config)?;
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", user.uid, user.gid))
                .arg(&dir)
                .status()
                .await
                .map_err(|e| io_error(&dir, &e))?;
            if !status.success() {
                return Err(ControlError::Config(format!(
                    "chown of {} failed",
                    dir.display()
                )));
            }
        }
        let scratch = Scratch {
            admin: ServerAdmin::new(&scratch_config(source, &dir), 2)?,
            dir,
            bin,
            run_as,
        };
        let options = [
            "-c listen_addresses=''".to_owned(),
            format!("-c unix_socket_directories='{}'", scratch.dir.display()),
            "-c port=5432".to_owned(),
            // The server's own files may name paths of its host: none of them is used.
            format!("-c hba_file='{}'", hba.display()),
            format!("-c ident_file='{}'", ident.display()),
            "-c external_pid_file=''".to_owned(),
            "-c restore_command=false".to_owned(),
            format!("-c recovery_target_time='{}'", moment.to_rfc3339()),
            "-c recovery_target_action=promote".to_owned(),
            "-c recovery_target_timeline=current".to_owned(),
            "-c hot_standby=off".to_owned(),
            "-c fsync=off".to_owned(),
            "-c archive_mode=off".to_owned(),
            "-c ssl=off".to_owned(),
            "-c shared_preload_libraries=''".to_owned(),
            "-c logging_collector=off".to_owned(),
            "-c max_wal_senders=0".to_owned(),
            "-c max_replication_slots=0".to_owned(),
        ]
        .join(" ");
        let started_pg = scratch
            .pg_ctl()
            .arg("start")
            .arg("-w")
            .args(["-t", "3600"])
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(scratch.dir.join("recovery.log"))
            .arg("-o")
            .arg(&options)
            .output()
            .await
            .map_err(|e| ControlError::Config(format!("cannot run pg_ctl: {e}")))?;
        if !started_pg.status.success() {
            let log = std::fs::read_to_string(scratch.dir.join("recovery.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            let detail = format!(
                "the recovery of server {server} to {moment} failed: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
            scratch.remove(config).await;
            return Err(ControlError::Copy(detail));
        }
        info!(
            %server, %moment, base_backup = %plan.base.id,
            segments = plan.to + 1 - plan.from,
            left_out = plan.left_out.len(),
            unpacked_ms = restored_in.as_millis() as u64,
            recovered_ms = started.elapsed().as_millis() as u64,
            "scratch instance recovered"
        );
        Ok(scratch)
    }

    fn pg_ctl(&self) -> Command {
        command(&self.bin.join("pg_ctl"), self.run_as.as_ref())
    }

    /// Stops the instance (immediately: nothing in it is kept) and deletes its directory.
    pub async fn remove(self, config: &Config) {
        self.admin.close().await;
        remove_dir(config, &self.dir).await;
    }
}

/// Stops a scratch instance left in `dir` (by a crash, say) and deletes the directory.
pub async fn remove_dir(config: &Config, dir: &Path) {
    let data = dir.join("data");
    if data.join("postmaster.pid").exists() {
        let stopped = match (data.join("PG_VERSION").exists(), run_as(config)) {
            (true, Ok(user)) => {
                let version = std::fs::read_to_string(data.join("PG_VERSION")).unwrap_or_default();
                match server_bin(config, version.trim()) {
                    Ok(bin) => command(&bin.join("pg_ctl"), user.as_ref())
                        .args(["stop", "-m", "immediate", "-D"])
                        .arg(&data)
                        .output()
                        .await
                        .is_ok_and(|o| o.status.success()),
                    Err(_) => false,
                }
            }
            _ => false,
        };
        if !stopped {
            warn!(dir = %dir.display(), "could not stop a scratch instance with pg_ctl");
        }
    }
    // A base backup's tree: not on the runtime's threads (they keep leases alive).
    let owned = dir.to_owned();
    let removed = tokio::task::spawn_blocking(move || {
        if owned.exists() {
            std::fs::remove_dir_all(&owned)
        } else {
            Ok(())
        }
    })
    .await;
    if let Ok(Err(e)) = removed {
        warn!(dir = %dir.display(), error = %e, "could not remove a scratch directory");
    }
}

fn command(program: &Path, run_as: Option<&nix::unistd::User>) -> Command {
    let mut command = Command::new(program);
    command
        .stdin(Stdio::null())
        .env_remove("PGDATA")
        .kill_on_drop(false);
    if let Some(user) = run_as {
        command
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .env("HOME", &user.dir)
            .current_dir("/");
    }
    command
}

/// The user PostgreSQL runs as: ours, unless we are root (it refuses root).
fn run_as(config: &Config) -> Result<Option<nix::unistd::User>, ControlError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    let name = &config.wal_archive.run_as;
    nix::unistd::User::from_name(name)
        .map_err(|e| ControlError::Config(format!("[wal_archive] run_as {name}: {e}")))?
        .ok_or_else(|| {
            ControlError::Config(format!(
                "[wal_archive] run_as: no user {name} (scratch instances cannot run as root)"
            ))
        })
        .map(Some)
}

/// The server programs of major version `version`.
fn server_bin(config: &Config, version: &str) -> Result<PathBuf, ControlError> {
    let bin = config
        .wal_archive
        .pg_bin_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/usr/lib/postgresql/{version}/bin")));
    if !bin.join("postgres").is_file() || !bin.join("pg_ctl").is_file() {
        return Err(ControlError::Config(format!(
            "PostgreSQL {version}'s server programs are not in {} (the base backup is of \
             version {version}; install them or set [wal_archive] pg_bin_dir)",
            bin.display()
        )));
    }
    Ok(bin)
}

/// Connection settings of a scratch instance: its socket, the source's admin role.
fn scratch_config(source: &ServerConfig, dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::new(
        "scratch".parse::<ServerId>().expect("a valid server id"),
        source.region.clone(),
        dir.display().to_string(),
        5432,
        source.admin_user.clone(),
        // Unused (the socket trusts its owner), but an admin config carries one.
        SecretString::from(Uuid::new_v4().to_string()),
    );
    config.admin_database.clone_from(&source.admin_database);
    config.sslmode = Some(tenancy_core::SslMode::Disable);
    config
}

/// Streams the base backup's tar into `data`, the files of databases in `left_out` as sparse
/// files of their size; then checks the object read was the one stored.
async fn unpack_base(
    backups: &BackupStore,
    identity: &age::pq::Identity,
    base: &BaseBackup,
    data: &Path,
    left_out: &BTreeSet<u32>,
) -> Result<(), ControlError> {
    let what = format!("base backup {}", base.id);
    let mut read = Hashing::new(backups.reader(&base.object_key).await?);
    {
        let mut plain = crypt::decrypting(identity, &mut read, &what).await?;
        // tar is read synchronously, on a blocking thread fed through a channel.
        let (chunks, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let (data, left_out, what_inner) = (data.to_owned(), left_out.clone(), what.clone());
        let unpacking = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                receiver,
                chunk: Vec::new(),
                at: 0,
            };
            unpack(reader, &data, &left_out, &what_inner)
        });
        let fed = async {
            loop {
                let mut chunk = vec![0; 256 << 10];
                let n = plain
                    .read(&mut chunk)
                    .await
                    .map_err(|e| ControlError::BackupUnreadable(format!("{what}: {e}")))?;
                if n == 0 {
                    return Ok::<_, ControlError>(());
                }
                chunk.truncate(n);
                if chunks.send(chunk).await.is_err() {
                    return Ok(());
                }
            }
        }
        .await;
        drop(chunks);
        let unpacked = unpacking
            .await
            .map_err(|e| ControlError::Corrupt(format!("{what}: {e}")))?;
        fed?;
        unpacked?;
    }
    if !read.is(base.stored_bytes, &base.sha256) {
        return Err(ControlError::BackupUnreadable(format!(
            "{what}: the store returned other bytes than were stored"
        )));
    }
    Ok(())
}

/// A blocking reader of the chunks an async task sends.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.receiver.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn unpack(
    from: impl std::io::Read,
    data: &Path,
    left_out: &BTreeSet<u32>,
    what: &str,
) -> Result<(), ControlError> {
    let unreadable = |e: std::io::Error| ControlError::BackupUnreadable(format!("{what}: {e}"));
    let mut archive = tar::Archive::new(from);
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let path = entry.path().map_err(unreadable)?.into_owned();
        let mut parts = path.components().map(|c| c.as_os_str().to_string_lossy());
        let skipped = parts.next().as_deref() == Some("base")
            && parts
                .next()
                .and_then(|oid| oid.parse::<u32>().ok())
                .is_some_and(|oid| left_out.contains(&oid))
            && entry.header().entry_type().is_file();
        if skipped {
            let target = data.join(&path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error(parent, &e))?;
            }
            let size = entry.header().size().map_err(unreadable)?;
            std::fs::File::create(&target)
                .and_then(|f| f.set_len(size))
                .map_err(|e| io_error(&target, &e))?;
        } else if !entry.unpack_in(data).map_err(unreadable)? {
            return Err(ControlError::BackupUnreadable(format!(
                "{what}: an entry outside the data directory ({})",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Refuses to start when the scratch directory's file system has less room than `needs`.
fn check_disk(dir: &Path, needs: u64) -> Result<(), ControlError> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| ControlError::Config(format!("free space of {}: {e}", dir.display())))?;
    #[allow(clippy::useless_conversion)]
    let free = u64::from(stat.blocks_available()) * u64::from(stat.fragment_size());
    let wanted = needs + HEADROOM;
    if free < wanted {
        return Err(ControlError::conflict(
            tenancy_core::ErrorCode::InvalidState,
            format!(
                "a point-in-time recovery needs {} MiB in {} ({} MiB for the base backup and \
                 WAL, {} MiB to spare); {} MiB are free: {} MiB missing",
                wanted >> 20,
                dir.display(),
                needs >> 20,
                HEADROOM >> 20,
                free >> 20,
                (wanted - free).div_ceil(1 << 20)
            ),
        ));
    }
    Ok(())
}

fn set_private(dir: &Path) -> Result<(), ControlError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_error(dir, &e))
}

fn absolute(dir: &Path) -> Result<PathBuf, ControlError> {
    std::path::absolute(dir).map_err(|e| io_error(dir, &e))
}

fn io_error(path: &Path, e: &std::io::Error) -> ControlError {
    ControlError::Config(format!("scratch instance, {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(databases: serde_json::Value) -> BaseBackup {
        BaseBackup {
            id: Uuid::nil(),
            timeline: 1,
            start_segno: 3,
            object_key: String::new(),
            size_bytes: 1_000 << 20,
            stored_bytes: 0,
            sha256: String::new(),
            databases,
        }
    }

    #[test]
    fn a_plan_leaves_out_the_other_tenants_and_counts_what_it_writes() {
        let segments = Segments::new(16 << 20).unwrap();
        let databases = serde_json::json!([
            {"name": "postgres", "oid": 5, "bytes": 8 << 20},
            {"name": "tenant_a", "oid": 16384, "bytes": 100 << 20},
            {"name": "tenant_b", "oid": 16385, "bytes": 700 << 20},
            {"name": "restoring_x", "oid": 16386, "bytes": 50 << 20},
        ]);
        let others: BTreeSet<String> = ["tenant_b".to_owned(), "tenant_c".to_owned()].into();
        let plan = Plan::new(base(databases), segments, Lsn(5 << 24 | 0x28), &others).unwrap();
        assert_eq!(plan.left_out, [16385].into());
        assert_eq!((plan.from, plan.to), (3, 5));
        // The base backup less tenant_b, and three segments.
        assert_eq!(plan.needs, (1_000 << 20) - (700 << 20) + 3 * (16 << 20));
    }

    #[test]
    fn a_recovery_that_does_not_fit_says_how_much_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        check_disk(dir.path(), 1 << 20).unwrap();
        let refused = check_disk(dir.path(), 1 << 60).unwrap_err().to_string();
        assert!(refused.contains("MiB missing"), "{refused}");
        assert!(refused.contains(&format!("{} MiB for the base backup", (1u64 << 60) >> 20)));
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_entry_type(tar::EntryType::Regular);
            // `append_data` refuses `..`: write the raw name as a hostile archive would.
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn unpacking_leaves_out_files_sparse_and_refuses_a_path_outside() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar_of(&[
            ("PG_VERSION", b"15\n"),
            ("base/16384/1259", b"kept bytes"),
            ("base/16385/1259", &[7u8; 8192]),
        ]);
        let left_out: BTreeSet<u32> = [16385].into();
        unpack(&archive[..], dir.path(), &left_out, "test").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("base/16384/1259")).unwrap(),
            b"kept bytes"
        );
        let sparse = dir.path().join("base/16385/1259");
        assert_eq!(std::fs::metadata(&sparse).unwrap().len(), 8192);
        assert!(std::fs::read(&sparse).unwrap().iter().all(|b| *b == 0));

        let hostile = tar_of(&[("../escaped", b"x")]);
        let inner = dir.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        let refused = unpack(&hostile[..], &inner, &left_out, "test").unwrap_err();
        assert!(
            refused.to_string().contains("outside the data directory"),
            "{refused}"
        );
        assert!(!dir.path().join("escaped").exists());
    }
}
