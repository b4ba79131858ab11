//! Backup encryption: the age format (<https://age-encryption.org/v1>) through the `age` crate.
//!
//! Each tenant has a backup key of its own: an age post-quantum identity (ML-KEM-768 with
//! X25519, so that backups kept for years resist "store now, decrypt later"), random, kept in
//! the registry sealed under the master key like a secret setting. Every backup of the tenant
//! is encrypted to its public half and, when configured, to a break-glass public key whose
//! private half is kept offline. age encrypts a random file key to each recipient and the
//! payload with
//! ChaCha20-Poly1305 in 64 KiB chunks (the STREAM construction): every chunk is authenticated
//! and the last one is marked, so a changed, reordered or truncated object is refused, and the
//! payload streams in constant memory. The format is audited and has independent
//! implementations (`age`, `rage`), so a break-glass holder needs nothing of this project.

use std::iter;
use std::str::FromStr;

use futures::io::AsyncWrite as FuturesWrite;
use secrecy::{ExposeSecret, SecretString};
use tenancy_core::OrgId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::{
    FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt, TokioAsyncReadCompatExt,
    TokioAsyncWriteCompatExt,
};

use crate::error::ControlError;
use crate::secrets::{self, Keyring, SealedSetting};

/// What a backup key is sealed as (the "setting" name in its associated data).
const SEALED_AS: &str = "tenancy/backup-key";

/// A tenant's backup key, sealed for the registry.
pub struct SealedBackupKey {
    pub sealed: SealedSetting,
    /// The public half (`age1...`).
    pub recipient: String,
}

/// Makes a new backup key for `org_id`, sealed under the current master key.
pub fn new_backup_key(keyring: &Keyring, org_id: &OrgId) -> SealedBackupKey {
    let identity = age::pq::Identity::generate();
    let secret = identity.to_string();
    SealedBackupKey {
        sealed: secrets::seal_setting(keyring, org_id, SEALED_AS, secret.expose_secret()),
        recipient: identity.to_public().to_string(),
    }
}

/// The identity a sealed backup key holds.
pub fn open_backup_key(
    keyring: &Keyring,
    org_id: &OrgId,
    sealed: &SealedSetting,
) -> Result<age::pq::Identity, ControlError> {
    let secret: SecretString = secrets::open_setting(keyring, org_id, SEALED_AS, sealed)?;
    age::pq::Identity::from_str(secret.expose_secret())
        .map_err(|e| ControlError::Corrupt(format!("backup key of tenant {org_id}: {e}")))
}

/// The same key sealed again under the current master key (`tenantctl rekey`).
pub fn reseal_backup_key(
    keyring: &Keyring,
    org_id: &OrgId,
    sealed: &SealedSetting,
) -> Result<SealedSetting, ControlError> {
    let secret: SecretString = secrets::open_setting(keyring, org_id, SEALED_AS, sealed)?;
    Ok(secrets::seal_setting(
        keyring,
        org_id,
        SEALED_AS,
        secret.expose_secret(),
    ))
}

/// Parses an age post-quantum public key.
pub fn recipient(text: &str) -> Result<age::pq::Recipient, ControlError> {
    text.parse()
        .map_err(|e| ControlError::Corrupt(format!("age recipient {text:?}: {e}")))
}

/// A writer that encrypts what it is given to `recipients` into `output`; shutting it down
/// writes the last chunk and shuts `output` down.
pub async fn encrypting<W>(
    recipients: &[age::pq::Recipient],
    output: W,
) -> Result<impl AsyncWrite + Unpin + use<W>, ControlError>
where
    W: AsyncWrite + Unpin,
{
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| ControlError::Config(format!("backup recipients: {e}")))?;
    let writer: age::stream::StreamWriter<_> = encryptor
        .wrap_async_output(output.compat_write())
        .await
        .map_err(|e| ControlError::BackupStore(format!("starting encryption: {e}")))?;
    Ok(assert_futures_write(writer).compat_write())
}

fn assert_futures_write<W: FuturesWrite + Unpin>(w: W) -> W {
    w
}

/// The plaintext of an encrypted object read from `input`, decrypted with `identity`. A header
/// that is not age's or not for this key fails here; a changed or truncated payload fails the
/// read where it is detected (no byte after a bad chunk is ever returned).
pub async fn decrypting<R>(
    identity: &age::pq::Identity,
    input: R,
    what: &str,
) -> Result<impl AsyncRead + Unpin + Send + use<R>, ControlError>
where
    R: AsyncRead + Unpin + Send,
{
    let buffered = futures::io::BufReader::new(input.compat());
    let decryptor = age::Decryptor::new_async_buffered(buffered)
        .await
        .map_err(|e| ControlError::BackupUnreadable(format!("{what} is not readable: {e}")))?;
    let reader = decryptor
        .decrypt_async(iter::once(identity as &dyn age::Identity))
        .map_err(|e| ControlError::BackupUnreadable(format!("{what} does not decrypt: {e}")))?;
    Ok(reader.compat())
}
