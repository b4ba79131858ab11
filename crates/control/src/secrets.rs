//! Tenant role passwords, derived from a master key so that no password is stored anywhere: the
//! engine and the connection-info endpoint compute the same one on demand.
//!
//! A password derives from the master key named by the tenant's `credential_key_id`, its
//! `org_id`, a random nonce of its own (so a purged and re-onboarded organization never gets an
//! old password back) and a generation (bumped by every rotation). The master key itself is
//! rotated by configuring the old one as the previous key and re-keying every tenant
//! (`tenantctl rekey`).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use tenancy_core::{OrgId, RoleName};
use uuid::Uuid;

use crate::error::ControlError;

/// The shortest master key accepted, in bytes.
pub const MIN_MASTER_KEY_BYTES: usize = 32;

/// A master key and its id (a digest of the key: it names the key without revealing it).
pub struct MasterKey {
    id: String,
    secret: SecretString,
}

impl MasterKey {
    /// Refuses keys shorter than [`MIN_MASTER_KEY_BYTES`].
    pub fn new(secret: SecretString) -> Result<Self, ControlError> {
        let length = secret.expose_secret().len();
        if length < MIN_MASTER_KEY_BYTES {
            return Err(ControlError::Config(format!(
                "a master key must be at least {MIN_MASTER_KEY_BYTES} bytes, this one has {length}"
            )));
        }
        let id = hex(&hmac(&secret, &[b"tenancy/key-id"])[..6]);
        Ok(Self { id, secret })
    }

    /// A secret for `purpose`, derived from the key (HMAC-SHA256): what the registry needs
    /// beside tenant passwords never uses the key itself.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac(&self.secret, &[b"tenancy/derived/", purpose.as_bytes()])
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The current master key, and the previous one while tenants are re-keyed.
#[derive(Clone)]
pub struct Keyring {
    current: Arc<MasterKey>,
    previous: Option<Arc<MasterKey>>,
}

impl Keyring {
    pub fn new(current: MasterKey, previous: Option<MasterKey>) -> Self {
        Self {
            current: Arc::new(current),
            previous: previous.map(Arc::new),
        }
    }

    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The key with this id, if it is the current or the previous one.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .map(Arc::as_ref)
    }
}

/// What a tenant role's password derives from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub org_id: OrgId,
    pub role: RoleName,
    pub nonce: Uuid,
    /// 0 for passwords made before generations existed (derived from the role name).
    pub generation: i32,
    /// The master key the password derives from; the current one when `None` (older rows).
    pub key_id: Option<String>,
}

impl Credentials {
    /// The same credentials one rotation later, under the current key.
    pub fn rotated(&self, keyring: &Keyring) -> Self {
        Self {
            generation: self.generation + 1,
            key_id: Some(keyring.current().id.clone()),
            ..self.clone()
        }
    }
}

/// The tenant role's password: `base64url(HMAC-SHA256(key, "tenancy/role-password/v2/" org_id
/// "/" nonce "/" generation))`, 43 characters. Generation 0 is the older scheme (the role name
/// alone).
pub fn tenant_password(
    keyring: &Keyring,
    credentials: &Credentials,
) -> Result<SecretString, ControlError> {
    let key = match &credentials.key_id {
        Some(id) => keyring.get(id).ok_or_else(|| {
            ControlError::Config(format!(
                "tenant {}'s password derives from master key {id}, which is neither the master \
                 key nor the previous one configured",
                credentials.org_id
            ))
        })?,
        None => keyring.current(),
    };
    let digest = if credentials.generation == 0 {
        hmac(
            &key.secret,
            &[
                b"tenancy/role-password/v1/",
                credentials.role.as_str().as_bytes(),
            ],
        )
    } else {
        hmac(
            &key.secret,
            &[
                b"tenancy/role-password/v2/",
                credentials.org_id.as_str().as_bytes(),
                b"/",
                credentials.nonce.as_bytes(),
                b"/",
                credentials.generation.to_string().as_bytes(),
            ],
        )
    };
    Ok(URL_SAFE_NO_PAD.encode(digest).into())
}

/// The signature of a webhook delivery: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
/// "<t>.<body>")>`. Receivers recompute it and refuse a stale `t` (replays).
pub fn sign_webhook(secret: &SecretString, unix_seconds: i64, body: &[u8]) -> String {
    let digest = hmac(secret, &[unix_seconds.to_string().as_bytes(), b".", body]);
    format!("t={unix_seconds},v1={}", hex(&digest))
}

/// A secret setting, sealed: the master key it was sealed under, and `nonce || ciphertext`.
pub struct SealedSetting {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

const NONCE_BYTES: usize = 12;

/// Encrypts a secret setting with AES-256-GCM under a key derived from the current master key
/// (`HMAC-SHA256(master, "tenancy/settings/v1")`), a random nonce, and the tenant and key as
/// associated data (a ciphertext moved to another tenant or key does not decrypt).
pub fn seal_setting(
    keyring: &Keyring,
    org_id: &OrgId,
    key: &str,
    plaintext: &str,
) -> SealedSetting {
    seal_scoped(keyring, org_id.as_str(), key, plaintext)
}

/// Decrypts a secret setting sealed by [`seal_setting`] under the current or previous key.
pub fn open_setting(
    keyring: &Keyring,
    org_id: &OrgId,
    key: &str,
    sealed: &SealedSetting,
) -> Result<SecretString, ControlError> {
    open_scoped(
        keyring,
        org_id.as_str(),
        &format!("tenant {org_id}"),
        key,
        sealed,
    )
}

/// [`seal_setting`] for what belongs to something else than a tenant (a server's WAL archive
/// key): `scope` takes the tenant's place in the associated data, so it must never be a
/// tenant's id (prefix it, e.g. `server:pg-1`).
pub fn seal_scoped(keyring: &Keyring, scope: &str, key: &str, plaintext: &str) -> SealedSetting {
    use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
    let master = keyring.current();
    let cipher = setting_cipher(master);
    let nonce = aes_gcm::Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = setting_aad(scope, key);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext.as_bytes(),
                aad: &aad,
            },
        )
        .expect("AES-GCM encrypts any message under 64 GiB");
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&ciphertext);
    SealedSetting {
        key_id: master.id().to_owned(),
        bytes,
    }
}

/// Opens what [`seal_scoped`] sealed; `whose` names its owner in errors.
pub fn open_scoped(
    keyring: &Keyring,
    scope: &str,
    whose: &str,
    key: &str,
    sealed: &SealedSetting,
) -> Result<SecretString, ControlError> {
    use aes_gcm::aead::{Aead, Payload};
    let master = keyring.get(&sealed.key_id).ok_or_else(|| {
        ControlError::Config(format!(
            "setting {key} of {whose} is sealed under master key {}, which is neither \
             the master key nor the previous one configured",
            sealed.key_id
        ))
    })?;
    if sealed.bytes.len() < NONCE_BYTES {
        return Err(ControlError::Corrupt(format!(
            "setting {key} of {whose}: too short"
        )));
    }
    let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_BYTES);
    let plaintext = setting_cipher(master)
        .decrypt(
            aes_gcm::Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &setting_aad(scope, key),
            },
        )
        .map_err(|_| ControlError::Corrupt(format!("setting {key} of {whose} does not decrypt")))?;
    String::from_utf8(plaintext)
        .map(SecretString::from)
        .map_err(ControlError::corrupt)
}

fn setting_cipher(master: &MasterKey) -> aes_gcm::Aes256Gcm {
    use aes_gcm::KeyInit;
    let key = hmac(&master.secret, &[b"tenancy/settings/v1"]);
    aes_gcm::Aes256Gcm::new(&key.into())
}

fn setting_aad(scope: &str, key: &str) -> Vec<u8> {
    [scope.as_bytes(), b"/", key.as_bytes()].concat()
}

/// PBKDF2 iterations of the SCRAM verifiers of tenant roles unless configured otherwise
/// (`[engine] scram_iterations`): PostgreSQL's default, and the least RFC 7677 asks clients to
/// accept. A tenant password is 256 random bits (see [`tenant_password`]), which no number of
/// guesses reaches, so fewer would only save time (every tenant login repeats them), but some
/// clients refuse a verifier with fewer.
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;

/// The SCRAM-SHA-256 verifier of a tenant password (a random salt, `iterations` rounds), so
/// that `CREATE ROLE` never carries the plain text (and it never shows in the server's logs or
/// `pg_stat_statements`).
pub fn scram_verifier(password: &SecretString, iterations: u32) -> String {
    use aes_gcm::aead::OsRng;
    use aes_gcm::aead::rand_core::RngCore;
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    scram_verifier_with(password, &salt, iterations)
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as PostgreSQL keeps it (RFC 5802;
/// a tenant password is ASCII, which SASLprep leaves as it is).
fn scram_verifier_with(password: &SecretString, salt: &[u8], iterations: u32) -> String {
    use base64::engine::general_purpose::STANDARD;
    use sha2::Digest;
    let salted = salted_password(password, salt, iterations);
    let stored_key = Sha256::digest(hmac_bytes(&salted, b"Client Key"));
    let server_key = hmac_bytes(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

fn salted_password(password: &SecretString, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        password.expose_secret().as_bytes(),
        salt,
        iterations,
        &mut salted,
    );
    salted
}

fn hmac_bytes(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Whether a SCRAM-SHA-256 verifier (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
/// as PostgreSQL keeps it) was made from `password`: what the reconciler uses to notice a role
/// whose password someone changed.
pub fn scram_matches(password: &SecretString, verifier: &str) -> bool {
    use base64::engine::general_purpose::STANDARD;
    use sha2::Digest;
    let parse = || -> Option<(u32, Vec<u8>, Vec<u8>)> {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, _server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok()?;
        // A verifier someone crafted must not cost unbounded work to check.
        (1..=100_000).contains(&iterations).then_some(())?;
        Some((
            iterations,
            STANDARD.decode(salt).ok()?,
            STANDARD.decode(stored).ok()?,
        ))
    };
    let Some((iterations, salt, stored)) = parse() else {
        return false;
    };
    let salted = salted_password(password, &salt, iterations);
    Sha256::digest(hmac_bytes(&salted, b"Client Key")).as_slice() == stored.as_slice()
}

fn hmac(key: &SecretString, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> MasterKey {
        MasterKey::new(SecretString::from(text.repeat(8))).unwrap()
    }

    #[test]
    fn a_sealed_setting_opens_only_for_its_tenant_and_key() {
        let keyring = Keyring::new(key("abcd"), None);
        let acme: OrgId = "100".parse().unwrap();
        let sealed = seal_setting(&keyring, &acme, "smtp.password", "hunter2");
        assert_eq!(sealed.key_id, keyring.current().id());
        assert!(!sealed.bytes.windows(7).any(|w| w == b"hunter2"));
        let opened = open_setting(&keyring, &acme, "smtp.password", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "hunter2");
        let other: OrgId = "200".parse().unwrap();
        assert!(open_setting(&keyring, &other, "smtp.password", &sealed).is_err());
        assert!(open_setting(&keyring, &acme, "smtp.user", &sealed).is_err());
        let again = seal_setting(&keyring, &acme, "smtp.password", "hunter2");
        assert_ne!(again.bytes, sealed.bytes, "a fresh nonce every time");
        let elsewhere = Keyring::new(key("wxyz"), None);
        assert!(open_setting(&elsewhere, &acme, "smtp.password", &sealed).is_err());
    }

    #[test]
    fn passwords_are_stable_distinct_and_change_with_every_input() {
        let keyring = Keyring::new(key("abcd"), Some(key("wxyz")));
        let base = Credentials {
            org_id: "100".parse().unwrap(),
            role: "tenant_a".parse().unwrap(),
            nonce: Uuid::from_u128(7),
            generation: 1,
            key_id: Some(keyring.current().id().to_owned()),
        };
        let password = |c: &Credentials| {
            tenant_password(&keyring, c)
                .unwrap()
                .expose_secret()
                .to_owned()
        };
        let p = password(&base);
        assert_eq!(p.len(), 43);
        assert_eq!(p, password(&base));
        let renonced = Credentials {
            nonce: Uuid::from_u128(8),
            ..base.clone()
        };
        let other_org = Credentials {
            org_id: "101".parse().unwrap(),
            ..base.clone()
        };
        for other in [
            base.rotated(&keyring),
            renonced,
            other_org,
            Credentials {
                key_id: Some(keyring.get(&key("wxyz").id).unwrap().id().to_owned()),
                ..base.clone()
            },
        ] {
            assert_ne!(p, password(&other), "{other:?}");
        }
        let unknown = Credentials {
            key_id: Some("000000000000".into()),
            ..base
        };
        assert!(tenant_password(&keyring, &unknown).is_err());
        let p: SecretString = p.into();
        let verifier = scram_verifier(&p, DEFAULT_SCRAM_ITERATIONS);
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"));
        assert!(scram_matches(&p, &verifier));
        assert_ne!(
            verifier,
            scram_verifier(&p, DEFAULT_SCRAM_ITERATIONS),
            "a salt of its own each time"
        );
        // The same computation as PostgreSQL's client library, given its salt and iterations.
        let theirs = postgres_protocol::password::scram_sha_256(p.expose_secret().as_bytes());
        let salt = theirs.split(['$', ':']).nth(2).unwrap();
        let salt = base64::engine::general_purpose::STANDARD
            .decode(salt)
            .unwrap();
        assert_eq!(scram_verifier_with(&p, &salt, 4096), theirs);
        assert!(!scram_matches(&"another".into(), &verifier));
        assert!(!scram_matches(&p, "md5abc"));
    }

    #[test]
    fn short_master_keys_are_refused() {
        assert!(MasterKey::new(SecretString::from("too short")).is_err());
        assert_eq!(key("abcd").id().len(), 12);
        assert_ne!(key("abcd").id(), key("abce").id());
    }
}
