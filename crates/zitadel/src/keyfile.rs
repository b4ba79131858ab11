//! ZITADEL key files and the JWTs signed with them: a service account's key (JWT profile, to call
//! the management API) and an API application's key (private-key JWT, to call introspection).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// A key file as ZITADEL hands it out (`{"type", "keyId", "key", "userId" | "clientId"}`).
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyFile {
    /// `serviceaccount` or `application`.
    #[serde(rename = "type")]
    pub kind: String,
    pub key_id: String,
    /// The RSA private key, PEM.
    key: SecretString,
    /// Set in a service account's key.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Set in an application's key.
    #[serde(default)]
    pub client_id: Option<String>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("kind", &self.kind)
            .field("key_id", &self.key_id)
            .field("user_id", &self.user_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a ZITADEL key file: {0}")]
    Format(String),
    #[error("cannot sign with the key file's key: {0}")]
    Key(String),
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    /// Unique per assertion (OpenID Connect Core §9): providers refuse assertions without it,
    /// and replays of one they have seen.
    jti: String,
}

impl KeyFile {
    pub fn from_json(json: &str) -> Result<Self, KeyFileError> {
        let file: KeyFile =
            serde_json::from_str(json).map_err(|e| KeyFileError::Format(e.to_string()))?;
        file.subject()?;
        EncodingKey::from_rsa_pem(file.key.expose_secret().as_bytes())
            .map_err(|e| KeyFileError::Key(e.to_string()))?;
        Ok(file)
    }

    pub fn from_path(path: &Path) -> Result<Self, KeyFileError> {
        let json = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&json)
    }

    /// Who the key speaks for: the user id of a service account, the client id of an application.
    pub fn subject(&self) -> Result<&str, KeyFileError> {
        match self.kind.as_str() {
            "serviceaccount" => self.user_id.as_deref(),
            "application" => self.client_id.as_deref(),
            _ => None,
        }
        .ok_or_else(|| {
            KeyFileError::Format(format!(
                "type {:?} with no matching userId/clientId",
                self.kind
            ))
        })
    }

    /// A short-lived JWT (RS256, `kid` = key id) with `iss` = `sub` = the subject, for `audience`
    /// (the issuer): a JWT-profile grant's assertion or an introspection client assertion.
    pub fn assertion(&self, audience: &str, lifetime: Duration) -> Result<String, KeyFileError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let subject = self.subject()?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        let claims = AssertionClaims {
            iss: subject,
            sub: subject,
            aud: audience,
            iat: now,
            exp: now + lifetime.as_secs(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let key = EncodingKey::from_rsa_pem(self.key.expose_secret().as_bytes())
            .map_err(|e| KeyFileError::Key(e.to_string()))?;
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| KeyFileError::Key(e.to_string()))
    }
}
