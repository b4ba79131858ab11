//! An S3-protocol server for tests: moto's `moto_server` (installed by `make test` into
//! `.local/venv`) on a free loopback port, with one bucket. Killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct S3Server {
    child: Child,
    port: u16,
    bucket: String,
}

impl S3Server {
    /// Starts the server and makes `bucket`.
    pub fn start(bucket: &str) -> Result<Self> {
        let program =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.local/venv/bin/moto_server");
        if !program.is_file() {
            bail!(
                "{} not found: `make test` installs moto into .local/venv",
                program.display()
            );
        }
        let port = crate::pg::free_port()?;
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let server = Self {
            child,
            port,
            bucket: bucket.to_owned(),
        };
        let started = Instant::now();
        loop {
            match put(port, &format!("/{bucket}")) {
                Ok(200) => return Ok(server),
                _ if started.elapsed() > Duration::from_secs(30) => {
                    bail!("moto_server did not answer on port {port} within 30 s")
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP/1.1 `PUT` with no body; returns the status.
fn put(port: u16, path: &str) -> Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no HTTP status")
}
