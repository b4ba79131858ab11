//! `pg_dump` and `pg_restore`, for moving a tenant's database between servers: finding them,
//! their version, and a dump streamed into a restore (through this process, counted, with no
//! file of the whole database anywhere). Credentials reach them in the environment, never on a
//! command line; the children die with the future that runs them.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::process::{Child, Command};

use crate::config::ServerConfig;
use crate::error::ControlError;

/// The PostgreSQL client tools a move runs.
#[derive(Debug, Clone)]
pub struct PgTools {
    dump: PathBuf,
    restore: PathBuf,
    /// Where they are (`pg_receivewal` and `pg_basebackup` are beside them).
    dir: PathBuf,
    /// Major version of `pg_dump` (it dumps servers up to its own version).
    pub major: u32,
}

impl PgTools {
    /// `pg_dump` and `pg_restore` in `dir`, else on the `PATH`, else in the newest
    /// `/usr/lib/postgresql/*/bin`.
    pub async fn find(dir: Option<&Path>) -> Result<Self, ControlError> {
        let dirs: Vec<PathBuf> = match dir {
            Some(dir) => vec![dir.to_owned()],
            None => {
                let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
                    .map(|path| std::env::split_paths(&path).collect())
                    .unwrap_or_default();
                let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        let major = e.file_name().to_str()?.parse().ok()?;
                        Some((major, e.path().join("bin")))
                    })
                    .collect();
                installed.sort();
                dirs.extend(installed.into_iter().rev().map(|(_, dir)| dir));
                dirs
            }
        };
        let found = dirs
            .iter()
            .find(|d| d.join("pg_dump").is_file() && d.join("pg_restore").is_file())
            .ok_or_else(|| {
                ControlError::move_unsupported(format!(
                    "pg_dump and pg_restore were not found ({}); install the PostgreSQL client \
                     or set [moves] pg_bin_dir",
                    match dir {
                        Some(dir) => format!("not in {}", dir.display()),
                        None => "not on the PATH nor in /usr/lib/postgresql/*/bin".to_owned(),
                    }
                ))
            })?;
        let dump = found.join("pg_dump");
        let output = Command::new(&dump)
            .arg("--version")
            .output()
            .await
            .map_err(|e| {
                ControlError::move_unsupported(format!("cannot run {}: {e}", dump.display()))
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let major = parse_major(&text).ok_or_else(|| {
            ControlError::move_unsupported(format!(
                "cannot read {}'s version from {text:?}",
                dump.display()
            ))
        })?;
        Ok(Self {
            dir: found.clone(),
            restore: found.join("pg_restore"),
            dump,
            major,
        })
    }

    /// Streams `pg_dump -Fc` of `source_db` into `pg_restore` on `target_db` (one transaction,
    /// stopping at the first error; objects owned by the restoring admin, privileges kept).
    /// `schema_only` copies no rows. Large objects are left out: restored without their owner
    /// they would be the admin's, so moves copy them themselves
    /// (`ServerAdmin::copy_large_objects`). Returns the bytes of the dump.
    pub async fn copy(
        &self,
        source: &ServerConfig,
        source_db: &str,
        target: &ServerConfig,
        target_db: &str,
        schema_only: bool,
    ) -> Result<u64, ControlError> {
        let source_env = ConnectionEnv::new(source, source_db)?;
        let target_env = ConnectionEnv::new(target, target_db)?;
        let mut dump = source_env
            .command(&self.dump)
            .args([
                "--format=custom",
                "--no-password",
                "--compress=0",
                "--no-blobs",
            ])
            .args(schema_only.then_some("--schema-only"))
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| copy_error(format!("cannot start pg_dump: {e}")))?;
        let mut restore = target_env
            .command(&self.restore)
            .args([
                "--no-password",
                "--no-owner",
                "--single-transaction",
                "--exit-on-error",
                "--dbname",
                target_db,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| copy_error(format!("cannot start pg_restore: {e}")))?;
        let mut from = dump.stdout.take().expect("piped");
        let mut to = restore.stdin.take().expect("piped");
        let copied = tokio::io::copy(&mut from, &mut to).await;
        drop(to);
        let dumped = finish("pg_dump", &mut dump).await;
        let restored = finish("pg_restore", &mut restore).await;
        dumped?;
        restored?;
        copied.map_err(|e| copy_error(format!("streaming the dump into pg_restore: {e}")))
    }
    /// Streams `pg_dump -Fc` of `db` as the exported `snapshot` sees it (large objects
    /// included, owners and privileges recorded) into `into`; returns the archive's bytes. A
    /// failing writer stops the dump.
    pub async fn dump_into<W: AsyncWrite + Unpin>(
        &self,
        server: &ServerConfig,
        db: &str,
        snapshot: &str,
        into: &mut W,
    ) -> Result<u64, ControlError> {
        let env = ConnectionEnv::new(server, db)?;
        let mut dump = env
            .command(&self.dump)
            .args(["--format=custom", "--no-password", "--snapshot", snapshot])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| copy_error(format!("cannot start pg_dump: {e}")))?;
        let mut from = dump.stdout.take().expect("piped");
        let copied = tokio::io::copy(&mut from, into).await;
        if copied.is_err() {
            let _ = dump.start_kill();
        }
        let dumped = finish("pg_dump", &mut dump).await;
        let bytes = copied.map_err(|e| copy_error(format!("storing the dump: {e}")))?;
        dumped?;
        Ok(bytes)
    }

    /// Streams an archive read from `from` into `pg_restore` on `db`: one transaction, stopping
    /// at the first error; owners and privileges as the archive records them, or, with
    /// `as_admin`, none of them (everything the admin's: the archive's roles are another
    /// tenant's). A reader that fails (a backup that does not authenticate) kills `pg_restore`
    /// before it can commit. Returns the archive's bytes.
    pub async fn restore_from<R: AsyncRead + Unpin>(
        &self,
        server: &ServerConfig,
        db: &str,
        from: &mut R,
        as_admin: bool,
    ) -> Result<u64, ControlError> {
        let env = ConnectionEnv::new(server, db)?;
        let mut restore = env
            .command(&self.restore)
            .args([
                "--no-password",
                "--single-transaction",
                "--exit-on-error",
                "--dbname",
                db,
            ])
            .args(
                as_admin
                    .then_some(["--no-owner", "--no-privileges"])
                    .into_iter()
                    .flatten(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| copy_error(format!("cannot start pg_restore: {e}")))?;
        let mut to = restore.stdin.take().expect("piped");
        let copied = tokio::io::copy(from, &mut to).await;
        if let Err(e) = copied {
            let _ = restore.kill().await;
            return Err(match e.get_ref().map(|inner| inner.to_string()) {
                Some(inner) => ControlError::BackupUnreadable(format!("read failed: {inner}")),
                None => ControlError::BackupUnreadable(format!("read failed: {e}")),
            });
        }
        drop(to);
        finish("pg_restore", &mut restore).await?;
        Ok(copied.unwrap_or_default())
    }

    /// Reads a whole archive from `from` with `pg_restore --list`; returns how many entries
    /// its table of contents has.
    pub async fn list_archive<R: AsyncRead + Unpin>(
        &self,
        from: &mut R,
    ) -> Result<usize, ControlError> {
        let mut list = Command::new(&self.restore)
            .arg("--list")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| copy_error(format!("cannot start pg_restore: {e}")))?;
        let mut to = list.stdin.take().expect("piped");
        let mut out = list.stdout.take().expect("piped");
        let reading = async {
            let mut text = String::new();
            out.read_to_string(&mut text).await.map(|_| text)
        };
        let writing = async {
            let copied = tokio::io::copy(from, &mut to).await;
            drop(to);
            copied
        };
        let (copied, text) = tokio::join!(writing, reading);
        if let Err(e) = copied {
            // pg_restore reads the table of contents and stops: the rest must still be read,
            // to authenticate it; a pipe it closed is no failure of the archive.
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                let _ = list.kill().await;
                return Err(ControlError::BackupUnreadable(format!("read failed: {e}")));
            }
            tokio::io::copy(from, &mut tokio::io::sink())
                .await
                .map_err(|e| ControlError::BackupUnreadable(format!("read failed: {e}")))?;
        }
        finish("pg_restore --list", &mut list).await?;
        let text = text.map_err(|e| copy_error(format!("reading pg_restore --list: {e}")))?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .count())
    }
}

/// The `application_name` of a keeper's `pg_receivewal`.
pub const WAL_KEEPER_APP: &str = "tenancy-wal-keeper";

impl PgTools {
    /// Starts `pg_receivewal` streaming `server`'s WAL into `dir` from where the segments in
    /// `dir` end (no slot of its own: the keeper holds the archive's slot and advances it only
    /// past what is stored). `--no-loop`: the keeper restarts it.
    pub fn receive_wal(&self, server: &ServerConfig, dir: &Path) -> Result<Running, ControlError> {
        let env = ConnectionEnv::new(server, "replication")?;
        let child = env
            .command(&self.dir.join("pg_receivewal"))
            .env("PGAPPNAME", WAL_KEEPER_APP)
            .args(["--no-loop", "--no-password", "--status-interval=1"])
            .arg("--directory")
            .arg(dir)
            .spawn()
            .map_err(|e| copy_error(format!("cannot start pg_receivewal: {e}")))?;
        Ok(Running { child, _env: env })
    }

    /// Starts `pg_basebackup` writing one tar stream of `server` to its stdout (no WAL: the
    /// archive has it), after a fast checkpoint.
    pub fn base_backup(&self, server: &ServerConfig) -> Result<Running, ControlError> {
        let env = ConnectionEnv::new(server, "replication")?;
        let child = env
            .command(&self.dir.join("pg_basebackup"))
            .env("PGAPPNAME", "tenancy-base-backup")
            .args([
                "--pgdata=-",
                "--format=tar",
                "--wal-method=none",
                "--checkpoint=fast",
                "--no-password",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| copy_error(format!("cannot start pg_basebackup: {e}")))?;
        Ok(Running { child, _env: env })
    }

    /// Waits for a tool started here; its failure carries the end of its stderr.
    pub async fn finish(name: &str, child: &mut Child) -> Result<(), ControlError> {
        finish(name, child).await
    }
}

/// A tool started here, with what its connection needs kept until it ends (the CA file).
pub struct Running {
    pub child: Child,
    _env: ConnectionEnv,
}

/// libpq's environment for one server's database: host, port, user, password, TLS.
struct ConnectionEnv {
    vars: Vec<(&'static str, String)>,
    /// The server's CA, written out for libpq (removed when dropped).
    _ca: Option<tempfile::NamedTempFile>,
}

impl ConnectionEnv {
    fn new(server: &ServerConfig, dbname: &str) -> Result<Self, ControlError> {
        let mut vars = vec![
            ("PGHOST", server.host.clone()),
            ("PGPORT", server.port.to_string()),
            ("PGUSER", server.admin_user.clone()),
            ("PGDATABASE", dbname.to_owned()),
            ("PGSSLMODE", server.sslmode().as_str().to_owned()),
            ("PGAPPNAME", "tenancy-move".to_owned()),
            ("PGCONNECT_TIMEOUT", "10".to_owned()),
        ];
        if let Some(password) = &server.password {
            vars.push(("PGPASSWORD", password.expose_secret().to_owned()));
        }
        let ca = match &server.ca_pem {
            Some(pem) => {
                let file = tempfile::NamedTempFile::new()
                    .and_then(|mut f| {
                        std::io::Write::write_all(&mut f, pem.as_bytes())?;
                        Ok(f)
                    })
                    .map_err(|e| copy_error(format!("writing the server's CA: {e}")))?;
                vars.push(("PGSSLROOTCERT", file.path().display().to_string()));
                Some(file)
            }
            None => None,
        };
        Ok(Self { vars, _ca: ca })
    }

    /// A command with this environment and nothing else of libpq's from ours.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("PG")) {
                command.env_remove(key);
            }
        }
        command
            .envs(self.vars.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// Waits for a tool; its failure carries the end of what it wrote on stderr.
async fn finish(name: &str, child: &mut Child) -> Result<(), ControlError> {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| copy_error(format!("waiting for {name}: {e}")))?;
    if status.success() {
        return Ok(());
    }
    let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
    Err(copy_error(format!("{name} failed ({status}): {tail}")))
}

fn parse_major(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn copy_error(detail: String) -> ControlError {
    ControlError::Copy(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_major_version() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta1"), None);
        assert_eq!(parse_major("nothing"), None);
    }
}
