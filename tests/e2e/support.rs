//! Runs the real `tenancy-registry` binary on a free loopback port against a test-kit cluster;
//! [`in_process`] runs the registry inside the test instead.

pub mod in_process;

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tenancy_testkit::PgCluster;

pub const TOKEN: &str = "e2e-dev-token";

/// Path of a workspace binary, built if missing.
pub fn binary(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let path = target.join("debug").join(name);
    if !path.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bin", name])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building {name} failed");
    }
    path
}

/// A cluster with the registry database, and the configuration the registry runs with.
pub struct Deployment {
    pub cluster: PgCluster,
    dir: tempfile::TempDir,
}

impl Deployment {
    pub fn new() -> Result<Self> {
        tenancy_testkit::init_test_logging();
        let cluster = PgCluster::start()?;
        cluster.create_database("tenancy_registry")?;
        let dir = tempfile::tempdir()?;
        let config = format!(
            r#"
            [engine]
            workers = 4
            lease = "3s"
            poll_interval = "200ms"
            backoff_base = "200ms"
            backoff_max = "2s"
            [registry]
            url = "unset"
            [[servers]]
            id = "pg-1"
            region = "local"
            host = "127.0.0.1"
            port = {port}
            admin_user = "{user}"
            password_env = "E2E_PG_PASSWORD"
            capacity = 1000
            "#,
            port = cluster.port(),
            user = cluster.admin_user(),
        );
        std::fs::write(dir.path().join("tenancy.toml"), config)?;
        Ok(Self { cluster, dir })
    }

    /// Starts the registry and waits until it is ready.
    pub async fn start(&self) -> Result<Registry> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))?;
        let child = Command::new(binary("tenancy-registry"))
            .env("TENANCY_CONFIG", self.dir.path().join("tenancy.toml"))
            .env(
                "TENANCY_REGISTRY__URL",
                self.cluster.url("tenancy_registry"),
            )
            .env("E2E_PG_PASSWORD", self.cluster.admin_password())
            .env("TENANCY_MASTER_KEY", "e2e-master-key")
            .env("TENANCY_DEV_TOKEN", TOKEN)
            .env("TENANCY_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANCY_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tenancy-registry")?;
        let mut registry = Registry {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        registry
            .wait_ready(Duration::from_secs(60))
            .await
            .with_context(|| self.log())?;
        Ok(registry)
    }

    /// The registry's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `tenant_*` databases on the cluster (the template excluded).
    pub fn tenant_databases(&self) -> Vec<String> {
        self.cluster
            .psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'tenant\\_%' AND datname <> 'tenant_template' ORDER BY 1")
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A running registry process; killed when dropped.
pub struct Registry {
    child: Option<Child>,
    pub base: String,
    pub http: reqwest::Client,
}

/// A response's status and JSON body (or `Value::Null`), and its content type.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

impl Registry {
    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("registry exited during start-up: {status}");
            }
            if let Ok(r) = self.http.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("registry not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a request with the development token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_as(Some(TOKEN), method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request.send().await.expect("request sent")).await
    }

    /// Sends raw bytes as the body with the given content type, on a connection of its own (the
    /// server closes a connection whose oversized body it refused unread).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        answer(response).await
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// SIGKILL: the process dies wherever it is.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns whether it exited cleanly within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        false
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
