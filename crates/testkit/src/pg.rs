use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use nix::unistd::{Uid, User};

/// The superuser every test cluster is created with. Throw-away clusters on loopback only.
pub const ADMIN_USER: &str = "postgres";
pub(crate) const ADMIN_PASSWORD: &str = "testkit-admin";

/// How a test cluster is tuned.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `fsync` and synchronous commit on (benchmarks), or off (tests: much faster, and a test
    /// cluster never survives a machine crash anyway).
    pub durable: bool,
    pub max_connections: u32,
    /// TLS on, and required of every TCP connection (`hostssl` only), with a certificate for
    /// these names signed by a CA of the cluster's own ([`PgCluster::ca_pem`]). `None`: plain.
    pub tls: Option<Vec<String>>,
    /// `wal_level = logical`, with room for the replication slots and senders of several
    /// moves (a source of online moves).
    pub logical: bool,
}

impl ClusterOptions {
    /// TLS required, with a certificate for `127.0.0.1` and `localhost`.
    pub fn with_tls(self) -> Self {
        self.with_tls_names(&["127.0.0.1", "localhost"])
    }

    /// `wal_level = logical`.
    pub fn logical(mut self) -> Self {
        self.logical = true;
        self
    }

    /// TLS required, with a certificate for `names` only.
    pub fn with_tls_names(mut self, names: &[&str]) -> Self {
        self.tls = Some(names.iter().map(|n| (*n).to_owned()).collect());
        self
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            durable: false,
            max_connections: 200,
            tls: None,
            logical: false,
        }
    }
}

/// A running throw-away PostgreSQL cluster. Dropping it stops it and removes its files.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    runner: Runner,
    watchdog: Option<Child>,
    /// The CA that signed the server's certificate, when TLS is on.
    ca: Option<String>,
}

impl PgCluster {
    /// Starts a cluster with default (fast, non-durable) options.
    pub fn start() -> Result<Self> {
        Self::start_with(ClusterOptions::default())
    }

    pub fn start_with(options: ClusterOptions) -> Result<Self> {
        let runner = Runner::detect()?;
        let template = initdb_cache(&runner)?;
        let root = std::env::temp_dir().join("tenancy-testkit");
        fs::create_dir_all(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;

        let mut last_error = None;
        // A free port can be taken by another test between our probe and the server's bind: retry.
        for _ in 0..5 {
            let dir = root.join(format!(
                "pg-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            copy_dir(&template, &dir)?;
            let ca = options
                .tls
                .as_deref()
                .map(|names| enable_tls(&dir, names))
                .transpose()?;
            runner.own(&dir)?;
            let port = free_port()?;
            let mut cluster = Self {
                dir,
                port,
                runner: runner.clone(),
                watchdog: None,
                ca,
            };
            match cluster.boot(&options) {
                Ok(()) => {
                    cluster.watchdog = Some(cluster.spawn_watchdog()?);
                    return Ok(cluster);
                }
                Err(e) => {
                    last_error = Some(e);
                    let _ = fs::remove_dir_all(&cluster.dir);
                    cluster.dir = PathBuf::new();
                }
            }
        }
        Err(last_error.unwrap())
    }

    fn boot(&self, options: &ClusterOptions) -> Result<()> {
        let durable = if options.durable { "on" } else { "off" };
        let mut server_options = format!(
            "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
             -c max_connections={max} -c shared_buffers=64MB -c fsync={durable} \
             -c synchronous_commit={durable} -c full_page_writes={durable} \
             -c log_min_messages=warning -c log_connections=off",
            port = self.port,
            max = options.max_connections,
        );
        if options.logical {
            server_options.push_str(
                " -c wal_level=logical -c max_replication_slots=40 -c max_wal_senders=40 \
                 -c max_worker_processes=40 -c max_logical_replication_workers=30",
            );
        }
        if self.ca.is_some() {
            server_options
                .push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        let output = self
            .runner
            .command("pg_ctl")
            .arg("start")
            .args(["-w", "-t", "60", "-D"])
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-o", &server_options])
            .output()
            .context("running pg_ctl start")?;
        if !output.status.success() {
            let log = fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            bail!(
                "pg_ctl start failed: {}{}\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// A process that outlives a killed test and stops the server (SIGQUIT to the postmaster is an
    /// immediate shutdown; root may signal it, where pg_ctl would refuse to run as root).
    fn spawn_watchdog(&self) -> Result<Child> {
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
             kill -QUIT $(head -n 1 '{dir}/postmaster.pid') 2>/dev/null; sleep 2; rm -rf '{dir}'",
            parent = std::process::id(),
            dir = self.dir.display(),
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("spawning the cluster watchdog")?;
        Ok(child)
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_user(&self) -> &'static str {
        ADMIN_USER
    }

    pub fn admin_password(&self) -> &'static str {
        ADMIN_PASSWORD
    }

    /// The CA that signed the server's certificate (PEM), when TLS is on.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca.as_deref()
    }

    /// A file holding [`PgCluster::ca_pem`], when TLS is on.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca.is_some().then(|| self.dir.join(CA_FILE))
    }

    /// `postgres://` URL for the superuser and `dbname`.
    pub fn url(&self, dbname: &str) -> String {
        self.url_as(ADMIN_USER, ADMIN_PASSWORD, dbname)
    }

    /// `postgres://` URL for any role (tests use it to try connecting as tenant roles); with
    /// `sslmode=verify-full` and the cluster's CA when TLS is on.
    pub fn url_as(&self, user: &str, password: &str, dbname: &str) -> String {
        let url = format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{dbname}",
            self.port
        );
        match self.ca_file() {
            Some(ca) => format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display()),
            None => url,
        }
    }

    /// Runs SQL through `psql` as the superuser; returns its unaligned output.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String> {
        let mut psql = Command::new(self.runner.bin.join("psql"));
        if let Some(ca) = self.ca_file() {
            psql.env("PGSSLMODE", "verify-ca").env("PGSSLROOTCERT", ca);
        }
        let output = psql
            .env("PGPASSWORD", ADMIN_PASSWORD)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                ADMIN_USER,
            ])
            .args(["-d", dbname, "-v", "ON_ERROR_STOP=1", "-XAtq", "-c", sql])
            .output()
            .context("running psql")?;
        if !output.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Replaces the server's client authentication rules (`pg_hba.conf`) and has it reload
    /// them; returns the rules replaced. The server applies them shortly after, not at once.
    pub fn set_hba(&self, rules: &str) -> Result<String> {
        let path = self.dir.join("pg_hba.conf");
        let before = fs::read_to_string(&path)?;
        fs::write(&path, rules)?;
        self.psql("postgres", "SELECT pg_reload_conf()")?;
        Ok(before)
    }

    /// What the server has logged so far.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Creates an empty database.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(())
    }

    /// Stops the server now (an immediate shutdown, as a crash would be); its files stay until drop.
    pub fn kill(&self) -> Result<()> {
        let output = self
            .runner
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&self.dir)
            .output()?;
        if !output.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        let _ = self.kill();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs PostgreSQL's programs, as an unprivileged user when we are root.
#[derive(Clone)]
struct Runner {
    bin: PathBuf,
    run_as: Option<User>,
}

impl Runner {
    fn detect() -> Result<Self> {
        let bin = pg_bin_dir().context("PostgreSQL binaries not found")?;
        let run_as = if Uid::effective().is_root() {
            let user = User::from_name("postgres")?
                .or(User::from_name("nobody")?)
                .context("running as root, and neither user 'postgres' nor 'nobody' exists")?;
            Some(user)
        } else {
            None
        };
        Ok(Self { bin, run_as })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.stdin(Stdio::null()).env_remove("PGDATA");
        if let Some(user) = &self.run_as {
            command
                .uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .env("HOME", &user.dir);
            command.current_dir("/");
        }
        command
    }

    /// Hands a directory tree to the user the server runs as.
    fn own(&self, path: &Path) -> Result<()> {
        let Some(user) = &self.run_as else {
            return Ok(());
        };
        let status = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", user.uid, user.gid))
            .arg(path)
            .status()?;
        if !status.success() {
            bail!("chown of {} failed", path.display());
        }
        chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
        Ok(())
    }
}

/// Where `initdb` and `pg_ctl` live: `$PG_BIN`, `pg_config --bindir`, the newest
/// `/usr/lib/postgresql/*/bin`, or `PATH`.
pub fn pg_bin_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PG_BIN") {
            return Some(PathBuf::from(dir));
        }
        let has_initdb = |dir: &Path| dir.join("initdb").is_file();
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && has_initdb(&dir) {
                return Some(dir);
            }
        }
        let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| has_initdb(p))
            .collect();
        versions.sort();
        if let Some(dir) = versions.pop() {
            return Some(dir);
        }
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).find(|p| has_initdb(p)))
    })
    .clone()
}

/// One `initdb` per machine and PostgreSQL version, copied for every cluster (a copy takes a
/// fraction of initdb's time). Built in a scratch directory and renamed into place, so concurrent
/// test processes never see half a cluster.
fn initdb_cache(runner: &Runner) -> Result<PathBuf> {
    let version = fs::read_to_string(
        runner
            .bin
            .parent()
            .unwrap_or(&runner.bin)
            .join("..")
            .join("PG_VERSION"),
    )
    .unwrap_or_default();
    let bin_tag = runner.bin.display().to_string().replace('/', "_");
    let root = std::env::temp_dir().join("tenancy-testkit");
    fs::create_dir_all(&root)?;
    let cached = root.join(format!("initdb{bin_tag}{}", version.trim()));
    if cached.join("PG_VERSION").is_file() {
        return Ok(cached);
    }
    let scratch = root.join(format!(
        "initdb-scratch-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    fs::create_dir_all(&scratch)?;
    let pwfile = scratch.join("pwfile");
    fs::write(&pwfile, ADMIN_PASSWORD)?;
    let data = scratch.join("data");
    runner.own(&scratch)?;
    let output = runner
        .command("initdb")
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            ADMIN_USER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .context("running initdb")?;
    if !output.status.success() {
        let _ = fs::remove_dir_all(&scratch);
        bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    if fs::rename(&data, &cached).is_err() && !cached.join("PG_VERSION").is_file() {
        bail!("could not place the initdb cache at {}", cached.display());
    }
    let _ = fs::remove_dir_all(&scratch);
    Ok(cached)
}

const CA_FILE: &str = "testkit-ca.pem";

/// Writes a fresh CA's certificate and a server certificate for `names` into the data
/// directory, and lets TCP clients in over TLS only. Returns the CA (PEM).
fn enable_tls(dir: &Path, names: &[String]) -> Result<String> {
    let ca = crate::tls::TestCa::new("tenancy-testkit cluster CA")?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let issued = ca.issue(&names)?;
    fs::write(dir.join("server.crt"), &issued.cert_pem)?;
    let key = dir.join("server.key");
    fs::write(&key, &issued.key_pem)?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
    fs::write(dir.join(CA_FILE), ca.pem())?;
    fs::write(
        dir.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
    )?;
    Ok(ca.pem())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    if !status.success() {
        bail!("copying {} to {} failed", from.display(), to.display());
    }
    Ok(())
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_start_side_by_side_and_vanish_on_drop() {
        let a = PgCluster::start().unwrap();
        let b = PgCluster::start().unwrap();
        assert_ne!(a.port(), b.port());
        assert_eq!(a.psql("postgres", "SELECT 1").unwrap(), "1");
        assert_eq!(
            b.psql("postgres", "SHOW server_version_num").unwrap().len(),
            6
        );
        let dir = a.dir.clone();
        drop(a);
        assert!(!dir.exists(), "cluster files removed");
        assert!(std::net::TcpStream::connect(("127.0.0.1", b.port())).is_ok());
    }

    #[test]
    fn a_panicking_test_still_stops_its_cluster() {
        let (tx, rx) = std::sync::mpsc::channel();
        let result = std::thread::spawn(move || {
            let cluster = PgCluster::start().unwrap();
            tx.send((cluster.port(), cluster.dir.clone())).unwrap();
            panic!("test failure");
        })
        .join();
        assert!(result.is_err());
        let (port, dir) = rx.recv().unwrap();
        assert!(!dir.exists());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
