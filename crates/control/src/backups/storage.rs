//! The backup store: objects under one prefix of whatever `object_store` opens from
//! `[backups] url`, written by streaming multipart uploads and read as streams.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::BackupsConfig;
use crate::error::ControlError;

/// The environment variables a store's builder may read: only its own family's, never any
/// other variable of the process (a short option name such as `token` would match a stray one).
const ENV_PREFIXES: &[&str] = &["AWS_", "GOOGLE_", "AZURE_"];

/// Where backups are kept.
#[derive(Clone)]
pub struct BackupStore {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    /// What the configuration named (for messages; a URL holds no credentials).
    location: String,
}

impl std::fmt::Debug for BackupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupStore")
            .field("location", &self.location)
            .finish()
    }
}

impl BackupStore {
    /// Opens the store `[backups] url` names (nothing is sent or made before the first
    /// backup; a directory is made then).
    pub fn open(config: &BackupsConfig) -> Result<Self, ControlError> {
        let url = &config.url;
        let parsed = if url.contains("://") {
            url::Url::parse(url)
                .map_err(|e| ControlError::Config(format!("backups.url {url:?}: {e}")))?
        } else {
            let dir = std::path::absolute(url)
                .map_err(|e| ControlError::Config(format!("backups.url {url:?}: {e}")))?;
            url::Url::from_directory_path(&dir).map_err(|()| {
                ControlError::Config(format!("backups.url {url:?} is not a directory path"))
            })?
        };
        let env = std::env::vars()
            .filter(|(k, _)| ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.to_ascii_lowercase(), v));
        let configured = config
            .s3_options()
            .into_iter()
            .filter(|_| parsed.scheme() == "s3")
            .map(|(k, v)| (k.to_owned(), v));
        let (inner, prefix) = object_store::parse_url_opts(&parsed, env.chain(configured))
            .map_err(|e| ControlError::Config(format!("backups.url {url:?}: {e}")))?;
        Ok(Self {
            inner: Arc::from(inner),
            prefix,
            location: parsed.to_string(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, key: &str) -> Path {
        Path::from_iter(self.prefix.parts().chain(Path::from(key).parts()))
    }

    /// A streaming upload of `key`, which exists only once the writer is shut down (a writer
    /// dropped before leaves no object).
    pub fn writer(&self, key: &str) -> Upload {
        Upload {
            inner: object_store::buffered::BufWriter::new(self.inner.clone(), self.path(key)),
            store: self.inner.clone(),
            path: self.path(key),
            shut_down: false,
            digest: Sha256::new(),
            bytes: 0,
        }
    }

    /// The object `key`, as a stream of bytes.
    pub async fn reader(
        &self,
        key: &str,
    ) -> Result<impl AsyncRead + Send + Unpin + use<>, ControlError> {
        let got = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(|e| store_error(&format!("reading {key}"), e))?;
        let stream = got.into_stream().map_err(std::io::Error::other);
        Ok(tokio_util::io::StreamReader::new(stream))
    }

    /// Deletes `key`; one that is not there is no error.
    pub async fn delete(&self, key: &str) -> Result<(), ControlError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(&format!("deleting {key}"), e)),
        }
    }

    /// The keys (relative to the store's prefix) and sizes of every object under `dir`.
    pub async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, ControlError> {
        let base = self.path(dir);
        let skip = self.prefix.parts().count();
        self.inner
            .list(Some(&base))
            .map_ok(|meta| {
                let key = meta
                    .location
                    .parts()
                    .skip(skip)
                    .map(|p| p.as_ref().to_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                (key, meta.size)
            })
            .try_collect()
            .await
            .map_err(|e| store_error(&format!("listing {dir}"), e))
    }

    /// Overwrites `key` with `bytes` (for tests and tools that damage or plant objects).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ControlError> {
        self.inner
            .put(&self.path(key), bytes.into())
            .await
            .map(drop)
            .map_err(|e| store_error(&format!("writing {key}"), e))
    }
}

fn store_error(what: &str, e: object_store::Error) -> ControlError {
    ControlError::BackupStore(format!("{what}: {e}"))
}

/// An upload under way: counts and hashes what it stores.
pub struct Upload {
    inner: object_store::buffered::BufWriter,
    /// For giving up once shutting down began (the object may exist by then).
    store: Arc<dyn ObjectStore>,
    path: Path,
    shut_down: bool,
    digest: Sha256,
    bytes: u64,
}

impl Upload {
    /// Bytes stored and their hex SHA-256 (complete once the writer is shut down).
    pub fn stored(&self) -> (u64, String) {
        (self.bytes, hex::encode(self.digest.clone().finalize()))
    }

    /// Gives up the upload, removing what was sent of it (the object itself, if shutting down
    /// had begun: it may have been stored).
    pub async fn abort(&mut self) {
        if self.shut_down {
            let _ = self.store.delete(&self.path).await;
        } else {
            let _ = self.inner.abort().await;
        }
    }
}

impl AsyncWrite for Upload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.digest.update(&buf[..n]);
                this.bytes += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.shut_down = true;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A reader that counts and hashes what passes through it.
pub struct Hashing<R> {
    inner: R,
    digest: Sha256,
    bytes: u64,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            digest: Sha256::new(),
            bytes: 0,
        }
    }

    /// Whether what was read is the object `backup` records: its size and SHA-256 (what a
    /// store returning other bytes, or a cut read, fails).
    pub fn is_stored(self, backup: &tenancy_core::Backup) -> bool {
        match (backup.stored_bytes, backup.sha256.as_deref()) {
            (Some(bytes), Some(sha256)) => self.is(bytes, sha256),
            _ => false,
        }
    }

    /// Whether what was read is `bytes` long with SHA-256 `sha256`.
    pub fn is(self, bytes: i64, sha256: &str) -> bool {
        hex::encode(self.digest.finalize()) == sha256
            && i64::try_from(self.bytes).ok() == Some(bytes)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let new = &buf.filled()[before..];
            this.digest.update(new);
            this.bytes += new.len() as u64;
        }
        polled
    }
}
