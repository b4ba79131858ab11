use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tenancy_core::OrgId;
use tracing::{debug, warn};

use crate::Caller;
use crate::caller::roles::PLATFORM_ROLES;
use crate::discovery::{Discovery, Endpoints};
use crate::keyfile::KeyFile;

const RESOURCE_OWNER_ID: &str = "urn:zitadel:iam:user:resourceowner:id";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Why a token was refused. Callers see only "unauthorized" (or "unavailable"); the reason is for
/// logs.
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
    /// Too many opaque tokens to introspect right now: the token was neither accepted nor refused.
    #[error("introspection rate limit reached")]
    RateLimited,
}

impl VerifyError {
    /// Whether the token itself was refused (as opposed to the provider being unavailable).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, VerifyError::Unavailable(_) | VerifyError::RateLimited)
    }
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
    /// The project whose id must be in `aud`; roles are read from its role claim only.
    pub project_id: String,
    /// The platform's own organization: `platform_admin` and `tenant_router` count only when
    /// granted there. Without it, those roles never count.
    pub platform_org_id: Option<OrgId>,
    /// Needed for opaque tokens; without it only JWTs are accepted.
    pub introspection: Option<IntrospectionClient>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// JWKS fetches (successful or not) are at least this far apart: a flood of unknown `kid`s
    /// cannot hammer the issuer, nor stall tokens signed with known keys.
    pub jwks_min_refresh: Duration,
    /// Keys are used at most this long after they were fetched; then the JWKS is read again and
    /// keys no longer published stop verifying.
    pub jwks_max_age: Duration,
    /// How long an introspection answer is reused at most (never past the token's `exp`).
    pub introspection_cache: Duration,
    /// The most introspection answers kept.
    pub introspection_cache_size: u64,
    /// Introspection calls per second at most for tokens never seen valid; beyond it, they are
    /// turned away as "unavailable" without asking the provider. Tokens seen valid before have
    /// a budget of their own, as large, so a flood of junk never locks them out.
    pub introspection_rate: NonZeroU32,
    /// Introspection calls per second at most for one client address (of tokens never seen
    /// valid): one client cannot spend the whole budget.
    pub introspection_rate_per_client: NonZeroU32,
    /// While the budget is spent, a positive answer is reused this long past
    /// `introspection_cache` (never past the token's `exp`).
    pub introspection_stale: Duration,
    /// Asymmetric algorithms only: HMAC with a public key and `none` can never verify.
    pub algorithms: Vec<Algorithm>,
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, project_id: impl Into<String>) -> Self {
        use Algorithm::*;
        Self {
            issuer: issuer.into(),
            project_id: project_id.into(),
            platform_org_id: None,
            introspection: None,
            leeway: Duration::from_secs(60),
            jwks_min_refresh: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(300),
            introspection_cache: Duration::from_secs(30),
            introspection_cache_size: 10_000,
            introspection_rate: NonZeroU32::new(50).expect("non-zero"),
            introspection_rate_per_client: NonZeroU32::new(10).expect("non-zero"),
            introspection_stale: Duration::from_secs(300),
            algorithms: vec![
                RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
            ],
        }
    }
}

/// An introspection answer: until when it may be reused, until when it may be reused while the
/// budget is spent (a positive one), and the caller (or inactive).
type CachedAnswer = (Instant, Instant, Result<Caller, ()>);

/// How long a token that introspected valid counts as "seen before" (its own budget).
const SEEN_VALID_FOR: Duration = Duration::from_secs(3600);

/// Client addresses whose budgets are kept before the idle ones are forgotten.
const CLIENTS_KEPT: usize = 10_000;

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Jwk>,
    /// When the keys above were fetched.
    fetched_at: Option<Instant>,
    /// When a fetch was last tried, successful or not.
    attempted_at: Option<Instant>,
}

/// Verifies ZITADEL access tokens. Share one per process (it caches keys and answers).
pub struct Verifier {
    config: VerifierConfig,
    http: reqwest::Client,
    discovery: Discovery,
    keys: RwLock<Keys>,
    /// One JWKS fetch at a time; held only around the fetch, never by verifications of known keys.
    refreshing: tokio::sync::Mutex<()>,
    introspected: moka::sync::Cache<[u8; 32], CachedAnswer>,
    /// Digests of tokens that introspected valid lately: they spend `known_limit`.
    seen_valid: moka::sync::Cache<[u8; 32], ()>,
    introspection_limit: DefaultDirectRateLimiter,
    known_limit: DefaultDirectRateLimiter,
    per_client: DefaultKeyedRateLimiter<IpAddr>,
}

impl Verifier {
    pub fn new(config: VerifierConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        Self {
            http,
            discovery: Discovery::new(&config.issuer),
            keys: RwLock::default(),
            refreshing: tokio::sync::Mutex::new(()),
            introspected: moka::sync::Cache::builder()
                .max_capacity(config.introspection_cache_size)
                .time_to_live(config.introspection_cache + config.introspection_stale)
                .build(),
            seen_valid: moka::sync::Cache::builder()
                .max_capacity(config.introspection_cache_size)
                .time_to_live(SEEN_VALID_FOR)
                .build(),
            introspection_limit: RateLimiter::direct(Quota::per_second(config.introspection_rate)),
            known_limit: RateLimiter::direct(Quota::per_second(config.introspection_rate)),
            per_client: RateLimiter::keyed(Quota::per_second(config.introspection_rate_per_client)),
            config,
        }
    }

    /// Verifies a bearer token: a JWT locally, anything else by introspection.
    pub async fn verify(&self, token: &str) -> Result<Caller, VerifyError> {
        self.verify_from(token, None).await
    }

    /// As [`Verifier::verify`], for a request from `client`: an opaque token never seen valid
    /// spends that address's introspection budget too.
    pub async fn verify_from(
        &self,
        token: &str,
        client: Option<IpAddr>,
    ) -> Result<Caller, VerifyError> {
        if token.matches('.').count() == 2 {
            self.verify_jwt(token).await
        } else {
            self.introspect(token, client).await
        }
    }

    async fn endpoints(&self) -> Result<&Endpoints, VerifyError> {
        self.discovery
            .endpoints(&self.http)
            .await
            .map_err(VerifyError::Unavailable)
    }

    /// The key `kid`: from the cache while it is fresh; otherwise after a JWKS fetch, when one
    /// is allowed (a single one in flight, at most one per `jwks_min_refresh`).
    async fn key(&self, kid: &str) -> Result<Jwk, VerifyError> {
        let (known, fresh) = self.cached_key(kid);
        if let (Some(key), true) = (&known, fresh) {
            return Ok(key.clone());
        }
        if !self.may_fetch() {
            // Stale keys keep verifying while a fetch is not allowed (an outage, a flood of
            // forged kids); an unknown kid is refused at once.
            return known.ok_or_else(|| VerifyError::UnknownKey(kid.to_owned()));
        }
        let refresh = match &known {
            // A known key past its age: whoever else is fetching will do.
            Some(key) => match self.refreshing.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(key.clone()),
            },
            None => self.refreshing.lock().await,
        };
        // Someone may have fetched while we waited.
        let (again, fresh) = self.cached_key(kid);
        if let (Some(key), true) = (&again, fresh) {
            return Ok(key.clone());
        }
        if !self.may_fetch() {
            drop(refresh);
            return again.ok_or_else(|| VerifyError::UnknownKey(kid.to_owned()));
        }
        let fetched = self.fetch_jwks().await;
        let mut keys = self.keys.write().expect("keys lock");
        keys.attempted_at = Some(Instant::now());
        match fetched {
            Ok(set) => {
                keys.by_kid = set
                    .keys
                    .into_iter()
                    .filter_map(|k| k.common.key_id.clone().map(|kid| (kid, k)))
                    .collect();
                keys.fetched_at = Some(Instant::now());
                debug!(keys = keys.by_kid.len(), "JWKS refreshed");
            }
            Err(e) => {
                warn!(error = %e, "JWKS fetch failed; keeping the keys fetched before");
                if known.is_none() {
                    return Err(e);
                }
            }
        }
        drop(refresh);
        keys.by_kid
            .get(kid)
            .cloned()
            .ok_or_else(|| VerifyError::UnknownKey(kid.to_owned()))
    }

    /// The cached key (if any) and whether the cache is fresh.
    fn cached_key(&self, kid: &str) -> (Option<Jwk>, bool) {
        let keys = self.keys.read().expect("keys lock");
        let fresh = keys
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.config.jwks_max_age);
        (keys.by_kid.get(kid).cloned(), fresh)
    }

    fn may_fetch(&self) -> bool {
        self.keys
            .read()
            .expect("keys lock")
            .attempted_at
            .is_none_or(|at| at.elapsed() >= self.config.jwks_min_refresh)
    }

    async fn fetch_jwks(&self) -> Result<JwkSet, VerifyError> {
        let uri = self.endpoints().await?.jwks_uri.clone();
        let response = self
            .http
            .get(&uri)
            .send()
            .await
            .map_err(|e| VerifyError::Unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(VerifyError::Unavailable(format!(
                "JWKS answered {}",
                response.status()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| VerifyError::Unavailable(e.to_string()))
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
        caller_from_claims(&data.claims, &self.config)
    }

    async fn introspect(&self, token: &str, from: Option<IpAddr>) -> Result<Caller, VerifyError> {
        let Some(client) = &self.config.introspection else {
            return Err(VerifyError::Malformed(
                "opaque token, and no introspection client configured".into(),
            ));
        };
        if !plausible_opaque_token(token) {
            return Err(VerifyError::Malformed(
                "not an opaque token ZITADEL issues (length or characters)".into(),
            ));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.introspected.get(&digest);
        if let Some((until, _, answer)) = &cached
            && Instant::now() < *until
        {
            return answer.clone().map_err(|()| VerifyError::Inactive);
        }
        if !self.may_introspect(&digest, from) {
            if let Some((_, stale_until, Ok(caller))) = cached
                && Instant::now() < stale_until
            {
                metrics::counter!("tenancy_introspection_stale_total").increment(1);
                return Ok(caller);
            }
            metrics::counter!("tenancy_introspection_limited_total").increment(1);
            return Err(VerifyError::RateLimited);
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
                .and_then(|()| caller_from_claims(&claims, &self.config))
        } else {
            Err(VerifyError::Inactive)
        };
        // Reused until min(cache period, exp); refusals are remembered as long (negative cache).
        // A positive answer may serve longer while the budget is spent, never past `exp`.
        let now = Instant::now();
        let mut until = now + self.config.introspection_cache;
        let mut stale_until = until + self.config.introspection_stale;
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            let unix_now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let expires = now + Duration::from_secs(exp.saturating_sub(unix_now));
            until = until.min(expires);
            stale_until = stale_until.min(expires);
        }
        if answer.is_ok() {
            self.seen_valid.insert(digest, ());
        } else {
            stale_until = until;
        }
        let cached = answer.as_ref().map(Clone::clone).map_err(|_| ());
        self.introspected
            .insert(digest, (until, stale_until, cached));
        answer
    }

    /// Whether a token may be introspected now: one seen valid lately spends its own budget;
    /// any other its client address's, then the shared one.
    fn may_introspect(&self, digest: &[u8; 32], from: Option<IpAddr>) -> bool {
        if self.seen_valid.contains_key(digest) {
            return self.known_limit.check().is_ok();
        }
        if let Some(address) = from {
            if self.per_client.len() > CLIENTS_KEPT {
                self.per_client.retain_recent();
            }
            if self.per_client.check_key(&address).is_err() {
                return false;
            }
        }
        self.introspection_limit.check().is_ok()
    }
}

/// Whether a token could be an opaque token ZITADEL issues (an access token or a personal
/// access token): RFC 6750's token characters, of a sensible length. Anything else is refused
/// without spending an introspection.
fn plausible_opaque_token(token: &str) -> bool {
    (20..=2048).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
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

/// Subject, organization and roles from ZITADEL's claims. Roles come from the configured
/// project's own role claim only: the generic claim describes whichever project the requesting
/// application belongs to, which may be anyone's. Platform roles count only when granted in the
/// platform organization.
fn caller_from_claims(
    claims: &serde_json::Map<String, Value>,
    config: &VerifierConfig,
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
    let specific = format!("urn:zitadel:iam:org:project:{}:roles", config.project_id);
    let mut roles = BTreeMap::new();
    if let Some(Value::Object(map)) = claims.get(&specific) {
        for (role, orgs) in map {
            let mut orgs: BTreeSet<OrgId> = match orgs {
                Value::Object(orgs) => orgs.keys().filter_map(|o| o.parse().ok()).collect(),
                _ => BTreeSet::new(),
            };
            if PLATFORM_ROLES.contains(&role.as_str()) {
                orgs.retain(|org| Some(org) == config.platform_org_id.as_ref());
            }
            if !orgs.is_empty() {
                roles.insert(role.clone(), orgs);
            }
        }
    }
    Ok(Caller {
        subject,
        org_id,
        roles,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn roles_come_from_our_project_only_and_platform_roles_from_the_platform_org_only() {
        let mut config = VerifierConfig::new("https://id.example", "111");
        config.platform_org_id = Some("900".parse().unwrap());
        let caller = caller_from_claims(
            &claims(json!({
                "sub": "u",
                // Another project's roles, in the generic claim: never count here.
                "urn:zitadel:iam:org:project:roles": {"platform_admin": {"555": "evil.example"}},
                "urn:zitadel:iam:org:project:111:roles": {
                    "platform_admin": {"555": "evil.example"},
                    "tenant_router": {"900": "platform.example"},
                    "tenant_admin": {"555": "evil.example"},
                },
            })),
            &config,
        )
        .unwrap();
        assert!(!caller.is_platform_admin());
        assert!(caller.can_route());
        assert!(caller.can_read_tenant(&"555".parse().unwrap()));
        assert!(!caller.can_read_tenant(&"900".parse().unwrap()));

        let generic_only = caller_from_claims(
            &claims(json!({"sub": "u", "urn:zitadel:iam:org:project:roles":
                {"platform_admin": {"900": "platform.example"}}})),
            &config,
        )
        .unwrap();
        assert!(generic_only.roles.is_empty());

        config.platform_org_id = None;
        let no_platform = caller_from_claims(
            &claims(json!({"sub": "u", "urn:zitadel:iam:org:project:111:roles":
                {"platform_admin": {"900": "platform.example"}}})),
            &config,
        )
        .unwrap();
        assert!(!no_platform.is_platform_admin());
    }
}
