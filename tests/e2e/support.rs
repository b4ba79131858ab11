//! Runs the real `tenancy-registry` binary on a free loopback port against a test-kit cluster
//! (`tenancy_registry::testing` runs the registry inside a test instead).

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tenancy_testkit::{FleetBuilder, TestFleet, eventually};

pub const TOKEN: &str = "e2e-dev-token-0123456789abcdef0123";

/// Path of a workspace binary, built (or found up to date) once per test process, so a test
/// never runs a binary older than the code.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let mut built = BUILT.lock().expect("build lock");
    if !built.iter().any(|b| b == name) {
        let mut build = Command::new(env!("CARGO"));
        // Cargo describes the running test's package in the environment. A build script that
        // reads one of these (ring reads CARGO_MANIFEST_DIR) would find it changed since
        // `cargo build` ran and rebuild half the workspace, and `cargo build` would rebuild it
        // back after the tests.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(describes_the_test_package) {
                build.env_remove(key);
            }
        }
        let status = build
            .args(["build", "--quiet", "--bin", name])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building {name} failed");
        built.push(name.to_owned());
    }
    target.join("debug").join(name)
}

/// Whether cargo sets `variable` for a running test, about the test's own package.
fn describes_the_test_package(variable: &str) -> bool {
    variable.starts_with("CARGO_PKG_")
        || matches!(
            variable,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_BIN_NAME"
                | "CARGO_TARGET_TMPDIR"
                | "OUT_DIR"
        )
}

/// A free TCP port on loopback (for a process about to bind it).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A fleet (one server, holding the registry database too) and the registry binary's log.
pub struct Deployment {
    pub fleet: TestFleet,
}

impl Deployment {
    /// One server, `pg-1`.
    pub fn new() -> Result<Self> {
        Ok(Self::on(Self::fleet().build()?))
    }

    /// The fleet a deployment runs with (add servers to it before building it).
    pub fn fleet() -> FleetBuilder {
        TestFleet::builder()
            .engine("workers", "4")
            .engine("lease", "\"3s\"")
            .engine("poll_interval", "\"200ms\"")
            .engine("backoff_base", "\"200ms\"")
            .engine("backoff_max", "\"2s\"")
    }

    /// A deployment on a fleet built from [`Deployment::fleet`]; its first server holds the
    /// registry database.
    pub fn on(fleet: TestFleet) -> Self {
        Self { fleet }
    }

    /// Starts the registry and waits until it is ready.
    pub async fn start(&self) -> Result<Registry> {
        self.start_with_env(&[]).await
    }

    /// As [`Deployment::start`], with more environment variables for the process.
    pub async fn start_with_env(&self, env: &[(&str, &str)]) -> Result<Registry> {
        let port = free_port()?;
        let mut command = self.fleet.command(binary("tenancy-registry"))?;
        command
            .env("TENANCY_DEV_TOKEN", TOKEN)
            .env("TENANCY_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANCY_LOG_FORMAT", "json")
            .envs(env.iter().copied());
        self.start_command(command, port).await
    }

    /// Starts a registry command set up by the caller (its environment, its arguments) that
    /// listens on `port` of loopback, logging into the deployment's log, and waits until ready.
    pub async fn start_command(&self, mut command: Command, port: u16) -> Result<Registry> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = command
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

    fn log_path(&self) -> PathBuf {
        self.fleet.dir().join("registry.log")
    }

    /// The registry's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `tenant_*` databases on the server (the template excluded).
    pub fn tenant_databases(&self) -> Vec<String> {
        self.fleet.tenant_databases("pg-1")
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
    /// The `Location` header, when there is one.
    pub location: Option<String>,
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

    /// GETs `path` until `field` of the answer is `value`; panics after a minute.
    pub async fn wait_for(&self, path: &str, field: &str, value: &str) -> Value {
        eventually(
            Duration::from_secs(60),
            format!("{path}: {field} becomes {value}"),
            || async {
                let answer = self.call(Method::GET, path, None).await;
                (answer.body[field] == value).then_some(answer.body)
            },
        )
        .await
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
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        location,
        body,
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
