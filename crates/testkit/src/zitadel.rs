//! A ZITADEL stand-in: OIDC discovery, JWKS (rotatable, listing the active and the previous key),
//! and introspection (client secret basic), with ZITADEL's JSON shapes. It mints tokens with its
//! own keys; the production client cannot tell it from a real instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

/// Fixed test keys (never used outside tests), so no slow key generation in debug builds.
const KEYS: [&str; 2] = [
    include_str!("../keys/rsa-a.pem"),
    include_str!("../keys/rsa-b.pem"),
];
pub const CLIENT_ID: &str = "263014839178379267@tenancy";
pub const CLIENT_SECRET: &str = "stand-in-client-secret";
pub const PROJECT_ID: &str = "263014839178313999";

struct Key {
    kid: String,
    pem: &'static str,
    jwk: Value,
}

struct State_ {
    issuer: String,
    keys: Vec<Key>,
    active: usize,
    /// Whether the JWKS still lists the previous key.
    previous: Option<usize>,
    opaque: HashMap<String, Value>,
    jwks_fetches: usize,
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    pub subject: String,
    pub org_id: String,
    /// (role, org) pairs, put in the project-specific role claim.
    pub roles: Vec<(String, String)>,
    pub audience: Vec<String>,
    /// Seconds from now; negative for an expired token.
    pub expires_in: i64,
    pub issuer: Option<String>,
}

impl TokenClaims {
    /// A user of `org_id` holding `role` there, valid for an hour, for the stand-in's project.
    pub fn new(subject: &str, org_id: &str, role: &str) -> Self {
        Self {
            subject: subject.into(),
            org_id: org_id.into(),
            roles: vec![(role.into(), org_id.into())],
            audience: vec![CLIENT_ID.into(), PROJECT_ID.into()],
            expires_in: 3600,
            issuer: None,
        }
    }
}

/// A running stand-in on a free loopback port; stops with the test's runtime.
#[derive(Clone)]
pub struct ZitadelStandIn {
    state: Arc<Mutex<State_>>,
    pub issuer: String,
}

impl ZitadelStandIn {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let keys = KEYS
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)?;
                let kid = format!("26301483917838{i}000");
                let jwk = json!({
                    "use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                    "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
                });
                Ok(Key { kid, pem, jwk })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let state = Arc::new(Mutex::new(State_ {
            issuer: issuer.clone(),
            keys,
            active: 0,
            previous: None,
            opaque: HashMap::new(),
            jwks_fetches: 0,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/oauth/v2/keys", get(jwks))
            .route("/oauth/v2/introspect", post(introspect))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { state, issuer })
    }

    pub fn project_id(&self) -> &'static str {
        PROJECT_ID
    }

    pub fn client(&self) -> (&'static str, &'static str) {
        (CLIENT_ID, CLIENT_SECRET)
    }

    /// A JWT access token signed with the active key.
    pub fn jwt(&self, claims: &TokenClaims) -> String {
        let state = self.state.lock().unwrap();
        let key = &state.keys[state.active];
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        let payload = self.payload(&state, claims);
        jsonwebtoken::encode(
            &header,
            &payload,
            &EncodingKey::from_rsa_pem(key.pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    /// An opaque token that introspection answers as active with these claims.
    pub fn opaque(&self, claims: &TokenClaims) -> String {
        let mut state = self.state.lock().unwrap();
        let token = format!("opaque-{:016x}", rand::random::<u64>());
        let mut payload = self.payload(&state, claims);
        payload["active"] = json!(claims.expires_in > 0);
        state.opaque.insert(token.clone(), payload);
        token
    }

    fn payload(&self, state: &State_, claims: &TokenClaims) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut roles = serde_json::Map::new();
        for (role, org) in &claims.roles {
            let entry = roles.entry(role.clone()).or_insert_with(|| json!({}));
            entry[org] = json!(format!("{org}.zitadel.example"));
        }
        json!({
            "iss": claims.issuer.clone().unwrap_or_else(|| state.issuer.clone()),
            "sub": claims.subject,
            "aud": claims.audience,
            "exp": now + claims.expires_in,
            "iat": now - 10,
            "nbf": now - 10,
            "client_id": CLIENT_ID,
            "urn:zitadel:iam:user:resourceowner:id": claims.org_id,
            format!("urn:zitadel:iam:org:project:{PROJECT_ID}:roles"): Value::Object(roles.clone()),
            "urn:zitadel:iam:org:project:roles": Value::Object(roles),
        })
    }

    /// Signs with the other key from now on; the JWKS lists both (the previous one still valid).
    pub fn rotate_keys(&self) {
        let mut state = self.state.lock().unwrap();
        state.previous = Some(state.active);
        state.active = (state.active + 1) % state.keys.len();
    }

    /// How often the JWKS was fetched (to test the refresh rate limit).
    pub fn jwks_fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }
}

async fn discovery(State(state): State<Arc<Mutex<State_>>>) -> Json<Value> {
    let issuer = state.lock().unwrap().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/oauth/v2/keys"),
        "token_endpoint": format!("{issuer}/oauth/v2/token"),
        "introspection_endpoint": format!("{issuer}/oauth/v2/introspect"),
    }))
}

async fn jwks(State(state): State<Arc<Mutex<State_>>>) -> Json<Value> {
    let mut state = state.lock().unwrap();
    state.jwks_fetches += 1;
    let mut keys = vec![state.keys[state.active].jwk.clone()];
    if let Some(previous) = state.previous {
        keys.push(state.keys[previous].jwk.clone());
    }
    Json(json!({ "keys": keys }))
}

/// RFC 7662 as ZITADEL answers it: 401 only when the client fails to authenticate, otherwise
/// `{"active": false}` for anything not known and active.
async fn introspect(
    State(state): State<Arc<Mutex<State_>>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let state = state.lock().unwrap();
    let answer = form
        .get("token")
        .and_then(|t| state.opaque.get(t))
        .filter(|claims| claims["active"] == json!(true))
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    Ok(Json(answer))
}
