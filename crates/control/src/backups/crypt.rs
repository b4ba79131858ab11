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
use tenancy_core::{OrgId, ServerId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::{
    FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt, TokioAsyncReadCompatExt,
    TokioAsyncWriteCompatExt,
};

use crate::error::ControlError;
use crate::secrets::{self, Keyring, SealedSetting};

/// A tenant's backup key, sealed for the registry.
pub struct SealedBackupKey {
    pub sealed: SealedSetting,
    /// The public half (`age1...`).
    pub recipient: String,
}

/// Whose key a sealed key is: a tenant's backup key or a server's WAL archive key. Both are
/// sealed as secret settings are, the owner and the key's kind as associated data.
struct KeyOwner {
    /// Takes the tenant's place in the associated data (a tenant's own id for its key).
    scope: String,
    /// The owner, for messages.
    whose: String,
    /// The "setting" name in the associated data.
    sealed_as: &'static str,
    /// The key's kind, for messages.
    what: &'static str,
}

impl KeyOwner {
    fn tenant(org_id: &OrgId) -> Self {
        Self {
            scope: org_id.as_str().to_owned(),
            whose: format!("tenant {org_id}"),
            sealed_as: "tenancy/backup-key",
            what: "backup key",
        }
    }

    /// A prefix no tenant id has, so a server's key never opens as a tenant's.
    fn server(server: &ServerId) -> Self {
        Self {
            scope: format!("server:{server}"),
            whose: format!("server {server}"),
            sealed_as: "tenancy/wal-archive-key",
            what: "WAL archive key",
        }
    }

    fn make(&self, keyring: &Keyring) -> SealedBackupKey {
        let identity = age::pq::Identity::generate();
        let secret = identity.to_string();
        SealedBackupKey {
            sealed: secrets::seal_scoped(
                keyring,
                &self.scope,
                self.sealed_as,
                secret.expose_secret(),
            ),
            recipient: identity.to_public().to_string(),
        }
    }

    fn secret(
        &self,
        keyring: &Keyring,
        sealed: &SealedSetting,
    ) -> Result<SecretString, ControlError> {
        secrets::open_scoped(keyring, &self.scope, &self.whose, self.sealed_as, sealed)
    }

    fn open(
        &self,
        keyring: &Keyring,
        sealed: &SealedSetting,
    ) -> Result<age::pq::Identity, ControlError> {
        age::pq::Identity::from_str(self.secret(keyring, sealed)?.expose_secret())
            .map_err(|e| ControlError::Corrupt(format!("{} of {}: {e}", self.what, self.whose)))
    }

    fn reseal(
        &self,
        keyring: &Keyring,
        sealed: &SealedSetting,
    ) -> Result<SealedSetting, ControlError> {
        let secret = self.secret(keyring, sealed)?;
        Ok(secrets::seal_scoped(
            keyring,
            &self.scope,
            self.sealed_as,
            secret.expose_secret(),
        ))
    }
}

/// Makes a new backup key for `org_id`, sealed under the current master key.
pub fn new_backup_key(keyring: &Keyring, org_id: &OrgId) -> SealedBackupKey {
    KeyOwner::tenant(org_id).make(keyring)
}

/// The identity a sealed backup key holds.
pub fn open_backup_key(
    keyring: &Keyring,
    org_id: &OrgId,
    sealed: &SealedSetting,
) -> Result<age::pq::Identity, ControlError> {
    KeyOwner::tenant(org_id).open(keyring, sealed)
}

/// The same key sealed again under the current master key (`tenantctl rekey`).
pub fn reseal_backup_key(
    keyring: &Keyring,
    org_id: &OrgId,
    sealed: &SealedSetting,
) -> Result<SealedSetting, ControlError> {
    KeyOwner::tenant(org_id).reseal(keyring, sealed)
}

/// Makes a new WAL archive key for `server` (its base backups and WAL segments are encrypted
/// to it), sealed under the current master key.
pub fn new_server_key(keyring: &Keyring, server: &ServerId) -> SealedBackupKey {
    KeyOwner::server(server).make(keyring)
}

/// The identity a sealed WAL archive key holds.
pub fn open_server_key(
    keyring: &Keyring,
    server: &ServerId,
    sealed: &SealedSetting,
) -> Result<age::pq::Identity, ControlError> {
    KeyOwner::server(server).open(keyring, sealed)
}

/// The same archive key sealed again under the current master key (`tenantctl rekey`).
pub fn reseal_server_key(
    keyring: &Keyring,
    server: &ServerId,
    sealed: &SealedSetting,
) -> Result<SealedSetting, ControlError> {
    KeyOwner::server(server).reseal(keyring, sealed)
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::secrets::MasterKey;

    fn keyring() -> Keyring {
        Keyring::new(
            MasterKey::new(SecretString::from("k".repeat(32))).unwrap(),
            None,
        )
    }

    async fn encrypted(recipients: &[age::pq::Recipient], plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = encrypting(recipients, &mut out).await.unwrap();
        writer.write_all(plain).await.unwrap();
        writer.shutdown().await.unwrap();
        drop(writer);
        out
    }

    async fn decrypted(identity: &age::pq::Identity, object: &[u8]) -> Result<Vec<u8>, String> {
        let mut reader = decrypting(identity, object, "test")
            .await
            .map_err(|e| e.to_string())?;
        let mut plain = Vec::new();
        reader
            .read_to_end(&mut plain)
            .await
            .map_err(|e| e.to_string())?;
        Ok(plain)
    }

    #[tokio::test]
    async fn the_tenant_key_and_the_break_glass_key_open_a_backup_and_no_other_key_does() {
        let keyring = keyring();
        let org: OrgId = "42".parse().unwrap();
        let tenant = new_backup_key(&keyring, &org);
        let own = open_backup_key(&keyring, &org, &tenant.sealed).unwrap();
        assert_eq!(own.to_public().to_string(), tenant.recipient);
        // The sealed key is bound to its tenant.
        assert!(open_backup_key(&keyring, &"43".parse().unwrap(), &tenant.sealed).is_err());
        let break_glass = age::pq::Identity::generate();
        let plain: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let object = encrypted(
            &[
                recipient(&tenant.recipient).unwrap(),
                break_glass.to_public(),
            ],
            &plain,
        )
        .await;
        assert!(object.starts_with(b"age-encryption.org/v1\n"));
        assert_eq!(decrypted(&own, &object).await.unwrap(), plain);
        assert_eq!(decrypted(&break_glass, &object).await.unwrap(), plain);
        let stranger = age::pq::Identity::generate();
        assert!(decrypted(&stranger, &object).await.is_err());
        // Re-sealed under another master key, the same key opens the same backups.
        let rotated = Keyring::new(
            MasterKey::new(SecretString::from("n".repeat(32))).unwrap(),
            Some(MasterKey::new(SecretString::from("k".repeat(32))).unwrap()),
        );
        let resealed = reseal_backup_key(&rotated, &org, &tenant.sealed).unwrap();
        assert_ne!(resealed.key_id, tenant.sealed.key_id);
        let again = open_backup_key(&rotated, &org, &resealed).unwrap();
        assert_eq!(decrypted(&again, &object).await.unwrap(), plain);
    }

    #[tokio::test]
    async fn a_changed_cut_or_extended_object_is_refused() {
        let identity = age::pq::Identity::generate();
        let plain = vec![7u8; 300_000];
        let object = encrypted(&[identity.to_public()], &plain).await;
        let mut flipped = object.clone();
        let last = flipped.len() - 10;
        flipped[last] ^= 1;
        let cut = object[..object.len() - 1].to_vec();
        let chunk_cut = object[..object.len() - 65_536].to_vec();
        let mut extended = object.clone();
        extended.extend_from_slice(b"more");
        for (what, bad) in [
            ("flipped", flipped),
            ("cut", cut),
            ("cut at a chunk", chunk_cut),
            ("extended", extended),
        ] {
            assert!(decrypted(&identity, &bad).await.is_err(), "{what}");
        }
    }
}
