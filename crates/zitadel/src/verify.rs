use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tenancy_core::OrgId;
use tracing::{debug, warn};

use crate::Caller;
use crate::discovery::{Discovery, Endpoints};
use crate::keyfile::KeyFile;

const RESOURCE_OWNER_ID: &str = "urn:zitadel:iam:user:resourceowner:id";
const ROLES: &str = "urn:zitadel:iam:org:project:roles";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Why a token was refused. Callers see only "unauthorized"; the reason is for logs.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("signing algorithm {0:?} is not allowed")]
    AlgorithmNotAllowed(Algorithm),
    #[error("no key {0:?} in the issuer's JWKS")]
    UnknownKey(String),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token is not active")]
    Inactive,
    #[error("identity provider unreachable: {0}")]
    Unavailable(String),
}

/// How the API application authenticates to the introspection endpoint.
#[derive(Debug, Clone)]
pub enum IntrospectionClient {
    /// Client secret basic: HTTP Basic with the client id and secret.
    Secret {
        client_id: String,
        client_secret: SecretString,
    },
    /// Private-key JWT: a client assertion signed with the application's key file.
    PrivateKeyJwt(KeyFile),
}

/// How long a client assertion is valid: it is made for one request.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The instance URL, compared exactly with `iss`.
    pub issuer: String,
    /// The project whose id must be in `aud`, and whose role claim wins.
    pub project_id: String,
    /// Needed for opaque tokens; without it only JWTs are accepted.
    pub introspection: Option<IntrospectionClient>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// An unknown `kid` refetches the JWKS at most this often.
    pub jwks_min_refresh: Duration,
    /// How long an introspection answer is reused.
    pub introspection_cache: Duration,
    /// Asymmetric algorithms only: HMAC with a public key and `none` can never verify.
    pub algorithms: Vec<Algorithm>,
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, project_id: impl Into<String>) -> Self {
        use Algorithm::*;
        Self {
            issuer: issuer.into(),
            project_id: project_id.into(),
            introspection: None,
            leeway: Duration::from_secs(60),
            jwks_min_refresh: Duration::from_secs(30),
            introspection_cache: Duration::from_secs(30),
            algorithms: vec![
                RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
            ],
        }
    }
}

/// An introspection answer by token digest: when it came, and the caller (or inactive).
type CachedAnswer = (Instant, Result<Caller, ()>);

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Jwk>,
    fetched_at: Option<Instant>,
}

/// Verifies ZITADEL access tokens. Share one per process (it caches keys and answers).
pub struct Verifier {
    config: VerifierConfig,
    http: reqwest::Client,
    discovery: Discovery,
    keys: tokio::sync::Mutex<Keys>,
    introspected: Mutex<HashMap<[u8; 32], CachedAnswer>>,
}

impl Verifier {
    pub fn new(config: VerifierConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        Self {
            http,
            discovery: Discovery::new(&config.issuer),
            keys: Default::default(),
            introspected: Default::default(),
            config,
        }
    }

    /// Verifies a bearer token: a JWT locally, anything else by introspection.
    pub async fn verify(&self, token: &str) -> Result<Caller, VerifyError> {
        if token.matches('.').count() == 2 {
            self.verify_jwt(token).await
        } else {
            self.introspect(token).await
        }
    }

    async fn endpoints(&self) -> Result<&Endpoints, VerifyError> {
        self.discovery
            .endpoints(&self.http)
            .await
            .map_err(VerifyError::Unavailable)
    }

    async fn key(&self, kid: &str) -> Result<Jwk, VerifyError> {
        let mut keys = self.keys.lock().await;
        if let Some(key) = keys.by_kid.get(kid) {
            return Ok(key.clone());
        }
        // An unknown kid: the keys may have rotated. Refetch, but not more often than allowed,
        // so a flood of forged kids cannot hammer the issuer.
        let may_refresh = keys
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.config.jwks_min_refresh);
        if may_refresh {
            let uri = self.endpoints().await?.jwks_uri.clone();
            let response = self
                .http
                .get(&uri)
                .send()
                .await
                .map_err(|e| VerifyError::Unavailable(e.to_string()))?;
            let set: JwkSet = response
                .json()
                .await
                .map_err(|e| VerifyError::Unavailable(e.to_string()))?;
            keys.by_kid = set
                .keys
                .into_iter()
                .filter_map(|k| k.common.key_id.clone().map(|kid| (kid, k)))
                .collect();
            keys.fetched_at = Some(Instant::now());
            debug!(keys = keys.by_kid.len(), "JWKS refreshed");
        }
        keys.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| VerifyError::UnknownKey(kid.to_owned()))
    }

    async fn verify_jwt(&self, token: &str) -> Result<Caller, VerifyError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if !self.config.algorithms.contains(&header.alg) {
            return Err(VerifyError::AlgorithmNotAllowed(header.alg));
        }
        let kid = header
            .kid
            .ok_or_else(|| VerifyError::Malformed("no kid in the header".into()))?;
        let jwk = self.key(&kid).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| VerifyError::Invalid(e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.project_id]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        caller_from_claims(&data.claims, &self.config.project_id)
    }

    async fn introspect(&self, token: &str) -> Result<Caller, VerifyError> {
        let Some(client) = &self.config.introspection else {
            return Err(VerifyError::Malformed(
                "opaque token, and no introspection client configured".into(),
            ));
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((at, answer)) = self.introspected.lock().expect("cache lock").get(&digest)
            && at.elapsed() < self.config.introspection_cache
        {
            return answer.clone().map_err(|()| VerifyError::Inactive);
        }
        let endpoint = self
            .endpoints()
            .await?
            .introspection_endpoint
            .clone()
            .ok_or_else(|| {
                VerifyError::Unavailable("discovery names no introspection endpoint".into())
            })?;
        let request = self.http.post(&endpoint);
        let request = match client {
            IntrospectionClient::Secret {
                client_id,
                client_secret,
            } => request
                .basic_auth(client_id, Some(client_secret.expose_secret()))
                .form(&[("token", token)]),
            IntrospectionClient::PrivateKeyJwt(key) => {
                let assertion = key
                    .assertion(self.discovery.issuer(), ASSERTION_LIFETIME)
                    .map_err(|e| VerifyError::Unavailable(e.to_string()))?;
                request.form(&[
                    ("token", token),
                    ("client_assertion_type", CLIENT_ASSERTION_TYPE),
                    ("client_assertion", &assertion),
                ])
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| VerifyError::Unavailable(e.to_string()))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            warn!("introspection refused our client credentials");
            return Err(VerifyError::Unavailable(
                "introspection refused the client credentials".into(),
            ));
        }
        if !response.status().is_success() {
            return Err(VerifyError::Unavailable(format!(
                "introspection answered {}",
                response.status()
            )));
        }
        let claims: serde_json::Map<String, Value> = response
            .json()
            .await
            .map_err(|e| VerifyError::Unavailable(e.to_string()))?;
        let answer = if claims.get("active").and_then(Value::as_bool) == Some(true) {
            check_registered_claims(&claims, &self.config)
                .and_then(|()| caller_from_claims(&claims, &self.config.project_id))
        } else {
            Err(VerifyError::Inactive)
        };
        let cached = answer.as_ref().map(Clone::clone).map_err(|_| ());
        let mut cache = self.introspected.lock().expect("cache lock");
        cache.retain(|_, (at, _)| at.elapsed() < self.config.introspection_cache);
        cache.insert(digest, (Instant::now(), cached));
        answer
    }
}

/// Introspection answers carry the same claims as a JWT; ZITADEL already checked the signature,
/// the issuer and the audience must still be ours.
fn check_registered_claims(
    claims: &serde_json::Map<String, Value>,
    config: &VerifierConfig,
) -> Result<(), VerifyError> {
    if claims.get("iss").and_then(Value::as_str) != Some(config.issuer.as_str()) {
        return Err(VerifyError::Invalid("wrong issuer".into()));
    }
    let in_audience = match claims.get("aud") {
        Some(Value::String(aud)) => aud == &config.project_id,
        Some(Value::Array(auds)) => auds
            .iter()
            .any(|a| a.as_str() == Some(config.project_id.as_str())),
        _ => false,
    };
    if !in_audience {
        return Err(VerifyError::Invalid("project not in audience".into()));
    }
    Ok(())
}

/// Subject, organization and roles from ZITADEL's claims. The project-specific role claim wins
/// over the generic one.
fn caller_from_claims(
    claims: &serde_json::Map<String, Value>,
    project_id: &str,
) -> Result<Caller, VerifyError> {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| VerifyError::Malformed("no sub claim".into()))?
        .to_owned();
    let org_id = claims
        .get(RESOURCE_OWNER_ID)
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<OrgId>().ok());
    let specific = format!("urn:zitadel:iam:org:project:{project_id}:roles");
    let role_claim = claims.get(&specific).or_else(|| claims.get(ROLES));
    let mut roles = BTreeMap::new();
    if let Some(Value::Object(map)) = role_claim {
        for (role, orgs) in map {
            let orgs: BTreeSet<OrgId> = match orgs {
                Value::Object(orgs) => orgs.keys().filter_map(|o| o.parse().ok()).collect(),
                _ => BTreeSet::new(),
            };
            roles.insert(role.clone(), orgs);
        }
    }
    Ok(Caller {
        subject,
        org_id,
        roles,
    })
}
