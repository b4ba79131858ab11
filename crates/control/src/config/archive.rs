//! `[wal_archive]` and a server's `wal_archive`: archiving database servers' WAL for
//! point-in-time restores of one tenant.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where the WAL keeper spools and where point-in-time recoveries run, for every server whose
/// WAL is archived (see [`ServerArchive`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// The keeper's local directory: `pg_receivewal` writes segments here, each deleted (left
    /// as an empty sparse file) once it is stored.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Where a point-in-time restore starts its scratch PostgreSQL instance (one directory per
    /// restore, removed when it ends). Needs room for the server's base backup (less the other
    /// tenants' databases, left out as sparse files) and its WAL up to the moment.
    #[serde(default = "default_scratch_dir")]
    pub scratch_dir: PathBuf,
    /// How often the keeper records a mark (a commit, and where the server's WAL then ends):
    /// the latest moment a restore reaches without forcing a WAL switch lags this much.
    #[serde(default = "default_mark_every", with = "humantime_serde")]
    pub mark_every: Duration,
    /// Directory of the PostgreSQL server programs (`postgres`, `pg_ctl`) of the servers'
    /// major version, for scratch instances: `/usr/lib/postgresql/<major>/bin` by default.
    #[serde(default)]
    pub pg_bin_dir: Option<PathBuf>,
    /// The user scratch instances run as when the registry runs as root (PostgreSQL refuses
    /// root).
    #[serde(default = "default_run_as")]
    pub run_as: String,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            spool_dir: default_spool_dir(),
            scratch_dir: default_scratch_dir(),
            mark_every: default_mark_every(),
            pg_bin_dir: None,
            run_as: default_run_as(),
        }
    }
}

/// A server's `wal_archive = { ... }`: present, its WAL is archived.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerArchive {
    /// A base backup (`pg_basebackup`) this often.
    #[serde(default = "default_base_backup_every", with = "humantime_serde")]
    pub base_backup_every: Duration,
    /// How far back a point-in-time restore reaches: older WAL and base backups are deleted
    /// (the newest base backup older than this is kept, so the window is always this long).
    #[serde(default = "default_keep", with = "humantime_serde")]
    pub keep: Duration,
}

impl Default for ServerArchive {
    fn default() -> Self {
        Self {
            base_backup_every: default_base_backup_every(),
            keep: default_keep(),
        }
    }
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from(".local/wal-spool")
}

fn default_scratch_dir() -> PathBuf {
    PathBuf::from(".local/scratch")
}

fn default_mark_every() -> Duration {
    Duration::from_secs(5)
}

fn default_run_as() -> String {
    "postgres".to_owned()
}

fn default_base_backup_every() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_keep() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
