//! A ZITADEL stand-in: OIDC discovery, JWKS (rotatable, listing the active and the previous key),
//! introspection (client secret basic and private-key JWT), the token endpoint (JWT profile
//! grant), and the management calls of `ZITADEL.md` (organizations, human users, invitations,
//! grants) and of an instance's set-up (projects, roles, API applications, machine users, keys,
//! instance managers), with ZITADEL's JSON shapes and error bodies. It mints tokens with its own keys, and
//! can be made to fail (an outage); the production client cannot tell it from a real instance.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

mod login;

/// Fixed test keys (never used outside tests), so no slow key generation in debug builds.
const KEYS: [&str; 2] = [
    include_str!("../../keys/rsa-a.pem"),
    include_str!("../../keys/rsa-b.pem"),
];
/// The key of the service account's and of the API application's key files.
const CLIENT_KEY: &str = include_str!("../../keys/rsa-c.pem");
pub const CLIENT_ID: &str = "263014839178379267@tenancy";
pub const CLIENT_SECRET: &str = "stand-in-client-secret";
pub const PROJECT_ID: &str = "263014839178313999";
/// The platform's own organization, where `platform_admin` and `tenant_router` are granted.
pub const PLATFORM_ORG_ID: &str = "263014839178300001";
/// The service account (machine user) the control plane calls the management API as.
pub const SERVICE_USER_ID: &str = "263014839178500001";
const SERVICE_KEY_ID: &str = "263014839178600001";
const APPLICATION_KEY_ID: &str = "263014839178600002";
pub const PAT: &str = "stand-in-personal-access-token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An organization in the stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: String,
    pub name: String,
    /// `ORGANIZATION_STATE_ACTIVE` or `ORGANIZATION_STATE_INACTIVE`.
    pub state: String,
    /// Metadata, decoded.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// A human user in the stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub org_id: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub invited: bool,
    /// Project role keys granted.
    pub roles: Vec<String>,
    /// A machine user (service account) rather than a person.
    pub machine: bool,
    /// The project of `roles`.
    pub project: Option<String>,
}

/// A project in the stand-in (besides the fixed [`PROJECT_ID`] the registry's tests use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub role_assertion: bool,
    pub roles: Vec<String>,
    /// (app id, name, client id), API applications.
    pub apps: Vec<(String, String, String)>,
    /// (app id, name, client id), web applications (OIDC, PKCE).
    pub web_apps: Vec<(String, String, String)>,
}

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
    /// While set, the JWKS endpoint answers 503 after this long (an identity-provider outage).
    jwks_down: Option<std::time::Duration>,
    introspections: usize,
    /// `jti`s of client assertions seen: a replay is refused.
    seen_jtis: HashSet<String>,
    /// Verifies assertions signed with the key files' key.
    client_key: DecodingKey,
    orgs: Vec<Org>,
    users: Vec<User>,
    projects: Vec<Project>,
    /// Instance managers: user id to roles.
    members: HashMap<String, Vec<String>>,
    /// Key ids of machine users' keys to the user id (JWT profile grant).
    machine_keys: HashMap<String, String>,
    /// Key ids of API applications' keys to the client id (private-key JWT introspection).
    application_keys: HashMap<String, String>,
    /// Requests to the management API, as "METHOD path".
    calls: Vec<String>,
    /// Personal access tokens of machine users, to the user id (introspected as that user).
    pats: HashMap<String, String>,
    /// Browser sign-ins: web applications, people, pending requests and codes.
    login: login::Logins,
    access_tokens: HashSet<String>,
    token_grants: usize,
    /// While set, the management API and the token endpoint answer this status.
    failing: Option<StatusCode>,
    refused_in_outage: usize,
    next_id: u64,
}

impl State_ {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("2630148391790{:05}", self.next_id)
    }

    /// A JWT of `payload`, signed with the active key.
    fn sign(&self, payload: &Value) -> String {
        let key = &self.keys[self.active];
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(
            &header,
            payload,
            &EncodingKey::from_rsa_pem(key.pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenClaims {
    pub subject: String,
    pub org_id: String,
    /// (role, org) pairs, put in the role claim of `project` and in the generic role claim, as
    /// ZITADEL does for the project of the application that asked for the token.
    pub roles: Vec<(String, String)>,
    /// The project whose role claim carries `roles` (the stand-in's own by default).
    pub project: String,
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
            project: PROJECT_ID.into(),
            audience: vec![CLIENT_ID.into(), PROJECT_ID.into()],
            expires_in: 3600,
            issuer: None,
        }
    }

    /// A user of the platform organization holding a platform role (`platform_admin`,
    /// `tenant_router`) there.
    pub fn platform(subject: &str, role: &str) -> Self {
        Self::new(subject, PLATFORM_ORG_ID, role)
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
        let client_key = rsa::RsaPrivateKey::from_pkcs1_pem(CLIENT_KEY)?;
        let client_key = DecodingKey::from_rsa_raw_components(
            &client_key.n().to_bytes_be(),
            &client_key.e().to_bytes_be(),
        );
        let state = Arc::new(Mutex::new(State_ {
            client_key,
            issuer: issuer.clone(),
            keys,
            active: 0,
            previous: None,
            opaque: HashMap::new(),
            jwks_fetches: 0,
            jwks_down: None,
            introspections: 0,
            seen_jtis: HashSet::new(),
            orgs: Vec::new(),
            users: Vec::new(),
            projects: Vec::new(),
            members: HashMap::new(),
            machine_keys: HashMap::from([(SERVICE_KEY_ID.into(), SERVICE_USER_ID.into())]),
            application_keys: HashMap::from([(APPLICATION_KEY_ID.into(), CLIENT_ID.into())]),
            calls: Vec::new(),
            pats: HashMap::new(),
            login: login::Logins::default(),
            access_tokens: HashSet::new(),
            token_grants: 0,
            failing: None,
            refused_in_outage: 0,
            next_id: 0,
        }));
        let management = Router::new()
            .route("/v2/organizations", post(create_org))
            .route("/v2/organizations/_search", post(search_orgs))
            .route("/v2/users/human", post(create_human))
            .route("/v2/users", post(search_users))
            .route("/v2/users/{user_id}/invite_code", post(invite))
            .route("/management/v1/users/{user_id}/grants", post(grant))
            .route(
                "/management/v1/metadata/{key}",
                get(get_org_metadata).post(set_org_metadata),
            )
            .route("/management/v1/orgs/me", get(my_org))
            .route("/management/v1/projects", post(create_project))
            .route("/management/v1/projects/_search", post(search_projects))
            .route("/management/v1/projects/{project_id}", put(update_project))
            .route("/management/v1/projects/{project_id}/roles", post(add_role))
            .route(
                "/management/v1/projects/{project_id}/apps/_search",
                post(search_apps),
            )
            .route(
                "/management/v1/projects/{project_id}/apps/api",
                post(create_api_app),
            )
            .route(
                "/management/v1/projects/{project_id}/apps/{app_id}/keys",
                post(add_app_key),
            )
            .route(
                "/management/v1/projects/{project_id}/apps/oidc",
                post(login::create_web_app),
            )
            .route(
                "/management/v1/projects/{project_id}/apps/{app_id}/oidc_config",
                put(login::update_web_app),
            )
            .route("/management/v1/users/machine", post(create_machine))
            .route("/management/v1/users/{user_id}/keys", post(add_machine_key))
            .route("/management/v1/users/{user_id}/pats", post(add_pat))
            .route("/admin/v1/members", post(add_member))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                management_auth,
            ));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/oauth/v2/keys", get(jwks))
            .route("/oauth/v2/introspect", post(introspect))
            .route("/oauth/v2/token", post(token))
            .route("/oauth/v2/authorize", get(login::authorize))
            .route("/ui/v2/login/login", post(login::sign_in))
            .route("/oidc/v1/end_session", get(login::end_session))
            .merge(management)
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
        state.sign(&Self::payload(&state, claims))
    }

    /// An opaque token that introspection answers as active with these claims.
    pub fn opaque(&self, claims: &TokenClaims) -> String {
        let mut state = self.state.lock().unwrap();
        let token = format!("opaque-{:016x}", rand::random::<u64>());
        let mut payload = Self::payload(&state, claims);
        payload["active"] = json!(claims.expires_in > 0);
        state.opaque.insert(token.clone(), payload);
        token
    }

    fn payload(state: &State_, claims: &TokenClaims) -> Value {
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
            format!("urn:zitadel:iam:org:project:{}:roles", claims.project): Value::Object(roles.clone()),
            "urn:zitadel:iam:org:project:roles": Value::Object(roles),
        })
    }

    /// Signs with the other key from now on; the JWKS lists both (the previous one still valid).
    pub fn rotate_keys(&self) {
        let mut state = self.state.lock().unwrap();
        state.previous = Some(state.active);
        state.active = (state.active + 1) % state.keys.len();
    }

    /// Stops publishing the previous key: tokens it signed must stop verifying.
    pub fn retire_previous_key(&self) {
        self.state.lock().unwrap().previous = None;
    }

    /// How often the JWKS was fetched (to test the refresh rate limit).
    pub fn jwks_fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }

    /// A JWKS outage: the endpoint answers 503 after `delay` until called with `None`.
    pub fn set_jwks_down(&self, delay: Option<std::time::Duration>) {
        self.state.lock().unwrap().jwks_down = delay;
    }

    /// How many introspection requests arrived.
    pub fn introspections(&self) -> usize {
        self.state.lock().unwrap().introspections
    }

    /// The service account's key file (JWT profile), as ZITADEL's console downloads it.
    pub fn service_account_key(&self) -> String {
        json!({"type": "serviceaccount", "keyId": SERVICE_KEY_ID, "key": CLIENT_KEY, "userId": SERVICE_USER_ID})
            .to_string()
    }

    /// The API application's key file (private-key JWT introspection).
    pub fn application_key(&self) -> String {
        json!({"type": "application", "keyId": APPLICATION_KEY_ID, "key": CLIENT_KEY,
               "appId": "263014839178379268", "clientId": CLIENT_ID})
        .to_string()
    }

    /// How many access tokens the token endpoint issued (to test token caching).
    pub fn token_grants(&self) -> usize {
        self.state.lock().unwrap().token_grants
    }

    /// An outage: the management API and the token endpoint answer 503 until it ends.
    pub fn set_outage(&self, down: bool) {
        self.fail_with(down.then_some(503));
    }

    /// The management API and the token endpoint answer `status` (with ZITADEL's error body)
    /// until called with `None`: 503 or 429 for transient trouble, 403 for a service account
    /// that lacks a permission.
    pub fn fail_with(&self, status: Option<u16>) {
        self.state.lock().unwrap().failing =
            status.map(|s| StatusCode::from_u16(s).expect("an HTTP status"));
    }

    /// Management calls refused during outages so far.
    pub fn refused_in_outage(&self) -> usize {
        self.state.lock().unwrap().refused_in_outage
    }

    /// An organization created behind the control plane's back (console, another tool).
    pub fn add_organization(&self, name: &str) -> String {
        let mut state = self.state.lock().unwrap();
        let id = state.new_id();
        state.orgs.push(Org {
            id: id.clone(),
            name: name.into(),
            state: "ORGANIZATION_STATE_ACTIVE".into(),
            metadata: Default::default(),
        });
        id
    }

    /// Sets an organization's metadata, as an operator (or the organization's owner) would in
    /// the console.
    pub fn set_organization_metadata(&self, id: &str, key: &str, value: &str) {
        self.change_organization(id, |org| {
            org.metadata.insert(key.into(), value.into());
        });
    }

    /// Deactivates (false) or reactivates (true) an organization.
    pub fn set_organization_active(&self, id: &str, active: bool) {
        self.change_organization(id, |org| {
            org.state = if active {
                "ORGANIZATION_STATE_ACTIVE"
            } else {
                "ORGANIZATION_STATE_INACTIVE"
            }
            .into();
        });
    }

    pub fn rename_organization(&self, id: &str, name: &str) {
        self.change_organization(id, |org| org.name = name.into());
    }

    fn change_organization(&self, id: &str, change: impl FnOnce(&mut Org)) {
        let mut state = self.state.lock().unwrap();
        change(
            state
                .orgs
                .iter_mut()
                .find(|o| o.id == id)
                .expect("known org"),
        );
    }

    pub fn remove_organization(&self, id: &str) {
        self.remove_organizations(&[id]);
    }

    /// Removes several organizations at once (no sync can run in between).
    pub fn remove_organizations(&self, ids: &[&str]) {
        let mut state = self.state.lock().unwrap();
        state.orgs.retain(|o| !ids.contains(&o.id.as_str()));
        state.users.retain(|u| !ids.contains(&u.org_id.as_str()));
    }

    pub fn organization(&self, id: &str) -> Option<Org> {
        let state = self.state.lock().unwrap();
        state.orgs.iter().find(|o| o.id == id).cloned()
    }

    pub fn organizations(&self) -> Vec<Org> {
        self.state.lock().unwrap().orgs.clone()
    }

    /// A person in an organization (the first instance's admin, say), by user name.
    pub fn add_human(&self, org_id: &str, user_name: &str) -> String {
        let mut state = self.state.lock().unwrap();
        let id = state.new_id();
        let human =
            json!({"username": user_name, "profile": {"givenName": "Ada", "familyName": "Admin"}});
        state.users.push(user_from_json(id.clone(), org_id, &human));
        id
    }

    /// Projects created through the management API.
    pub fn projects(&self) -> Vec<Project> {
        self.state.lock().unwrap().projects.clone()
    }

    /// The instance manager roles of a user (empty when not a manager).
    pub fn instance_roles(&self, user_id: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state.members.get(user_id).cloned().unwrap_or_default()
    }

    /// Every management request so far, as "METHOD path".
    pub fn management_calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Every user, people and machines.
    pub fn users(&self) -> Vec<User> {
        self.state.lock().unwrap().users.clone()
    }

    /// The user with this e-mail address in the organization.
    pub fn user(&self, org_id: &str, email: &str) -> Option<User> {
        let state = self.state.lock().unwrap();
        state
            .users
            .iter()
            .find(|u| u.org_id == org_id && u.email == email)
            .cloned()
    }
}

/// ZITADEL's error body: `{"code", "message", "details": [{"@type", "id", "message"}]}`.
fn zitadel_error(status: StatusCode, code: i64, message: &str) -> Response {
    let id = "STANDIN-1";
    let body = json!({
        "code": code,
        "message": format!("{message} ({id})"),
        "details": [{"@type": "type.googleapis.com/zitadel.v1.ErrorDetail", "id": id, "message": message}],
    });
    (status, Json(body)).into_response()
}

type Shared = State<Arc<Mutex<State_>>>;

/// Bearer token of the service account (a PAT or a token from the JWT profile grant), and the
/// outage switch.
async fn management_auth(State(state): Shared, request: Request, next: Next) -> Response {
    {
        let mut state = state.lock().unwrap();
        state
            .calls
            .push(format!("{} {}", request.method(), request.uri().path()));
        if let Some(status) = state.failing {
            state.refused_in_outage += 1;
            let (code, message) = match status.as_u16() {
                403 => (7, "Errors.PermissionDenied"),
                429 => (8, "Errors.Quota.RequestsExhausted"),
                _ => (14, "Errors.Internal"),
            };
            return zitadel_error(status, code, message);
        }
        let token = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let known = token.is_some_and(|t| t == PAT || state.access_tokens.contains(t));
        if !known {
            return zitadel_error(StatusCode::UNAUTHORIZED, 16, "Errors.Token.Invalid");
        }
    }
    next.run(request).await
}

/// Checks a JWT signed with the client key: `kid`, `iss` = `sub` = `subject`, `aud` = issuer,
/// `iat`, and a `jti` not seen before (OpenID Connect Core §9; replays are refused).
fn valid_assertion(state: &mut State_, jwt: &str, machine: bool) -> bool {
    let Ok(header) = jsonwebtoken::decode_header(jwt) else {
        return false;
    };
    let keys = if machine {
        &state.machine_keys
    } else {
        &state.application_keys
    };
    let Some(subject) = header.kid.as_deref().and_then(|kid| keys.get(kid)).cloned() else {
        return false;
    };
    let subject = subject.as_str();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&state.issuer]);
    validation.set_issuer(&[subject]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let Ok(data) = jsonwebtoken::decode::<Value>(jwt, &state.client_key, &validation) else {
        return false;
    };
    let Some(jti) = data.claims["jti"].as_str().filter(|j| !j.is_empty()) else {
        return false;
    };
    data.claims["sub"] == json!(subject)
        && data.claims["iat"].is_number()
        && state.seen_jtis.insert(jti.to_owned())
}

/// The JWT profile grant: a service account's signed assertion for an access token.
async fn token(State(state): Shared, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut state = state.lock().unwrap();
    if let Some(status) = state.failing {
        state.refused_in_outage += 1;
        return status.into_response();
    }
    if form.get("grant_type").map(String::as_str) == Some("authorization_code") {
        return login::exchange_code(&mut state, &form);
    }
    let ok = form.get("grant_type").map(String::as_str) == Some(JWT_BEARER)
        && form
            .get("assertion")
            .is_some_and(|a| valid_assertion(&mut state, a, true));
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": "assertion invalid"})),
        )
            .into_response();
    }
    state.token_grants += 1;
    let token = format!("sa-{:016x}", rand::random::<u64>());
    state.access_tokens.insert(token.clone());
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 43199}))
        .into_response()
}

fn user_from_json(id: String, org_id: &str, human: &Value) -> User {
    let email = human["email"]["email"]
        .as_str()
        .or_else(|| human["username"].as_str())
        .unwrap_or_default()
        .to_owned();
    User {
        id,
        org_id: org_id.to_owned(),
        email,
        given_name: human["profile"]["givenName"]
            .as_str()
            .unwrap_or_default()
            .into(),
        family_name: human["profile"]["familyName"]
            .as_str()
            .unwrap_or_default()
            .into(),
        invited: false,
        roles: Vec::new(),
        machine: false,
        project: None,
    }
}

/// Offset and limit from `query` or `pagination`; gRPC-gateway sends 64-bit numbers as strings.
fn paging(body: &Value) -> (usize, usize) {
    let page = body.get("query").or_else(|| body.get("pagination"));
    let number = |v: Option<&Value>| -> Option<usize> {
        match v? {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64().map(|n| n as usize),
            _ => None,
        }
    };
    let offset = number(page.and_then(|p| p.get("offset"))).unwrap_or(0);
    let limit = number(page.and_then(|p| p.get("limit")))
        .unwrap_or(100)
        .min(1000);
    (offset, limit)
}

async fn create_org(State(state): Shared, Json(body): Json<Value>) -> Response {
    let mut state = state.lock().unwrap();
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.Org.Invalid");
    };
    if let Some(id) = body["organizationId"].as_str()
        && state.orgs.iter().any(|o| o.id == id)
    {
        // What ZITADEL answers for a custom id that is taken.
        return zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.Org.AlreadyExisting");
    }
    if state.orgs.iter().any(|o| o.name == name) {
        return zitadel_error(StatusCode::CONFLICT, 6, "Errors.Org.AlreadyExists");
    }
    let id = match body["organizationId"].as_str() {
        Some(id) => id.to_owned(),
        None => state.new_id(),
    };
    state.orgs.push(Org {
        id: id.clone(),
        name: name.into(),
        state: "ORGANIZATION_STATE_ACTIVE".into(),
        metadata: Default::default(),
    });
    let mut created = Vec::new();
    for admin in body["admins"].as_array().into_iter().flatten() {
        let user_id = state.new_id();
        let user = user_from_json(user_id.clone(), &id, &admin["human"]);
        state.users.push(user);
        created.push(json!({"userId": user_id}));
    }
    (
        StatusCode::CREATED,
        Json(json!({"organizationId": id, "createdAdmins": created, "details": {"sequence": "1"}})),
    )
        .into_response()
}

async fn search_orgs(State(state): Shared, Json(body): Json<Value>) -> Json<Value> {
    let state = state.lock().unwrap();
    let by_id = body["queries"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|q| q["idQuery"]["id"].as_str());
    let matching: Vec<&Org> = state
        .orgs
        .iter()
        .filter(|o| by_id.is_none_or(|id| o.id == id))
        .collect();
    let (offset, limit) = paging(&body);
    let result: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| json!({"id": o.id, "name": o.name, "state": o.state, "primaryDomain": format!("{}.zitadel.example", o.id)}))
        .collect();
    Json(json!({"details": {"totalResult": matching.len().to_string()}, "result": result}))
}

async fn create_human(State(state): Shared, Json(body): Json<Value>) -> Response {
    let mut state = state.lock().unwrap();
    let Some(org_id) = body["organization"]["orgId"].as_str() else {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.User.Invalid");
    };
    if !state.orgs.iter().any(|o| o.id == org_id) {
        return zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.Org.NotFound");
    }
    let given = body["profile"]["givenName"].as_str().unwrap_or_default();
    let family = body["profile"]["familyName"].as_str().unwrap_or_default();
    if given.is_empty() || family.is_empty() {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.User.Profile.Invalid");
    }
    let username = body["username"].as_str().unwrap_or_default();
    // User names are unique across the instance.
    if state.users.iter().any(|u| u.email == username) {
        return zitadel_error(StatusCode::CONFLICT, 6, "Errors.User.AlreadyExisting");
    }
    let id = state.new_id();
    let user = user_from_json(id.clone(), org_id, &body);
    state.users.push(user);
    (
        StatusCode::CREATED,
        Json(json!({"userId": id, "details": {"sequence": "1"}})),
    )
        .into_response()
}

async fn search_users(State(state): Shared, Json(body): Json<Value>) -> Json<Value> {
    let state = state.lock().unwrap();
    let queries: Vec<&Value> = body["queries"].as_array().into_iter().flatten().collect();
    let email = queries
        .iter()
        .find_map(|q| q["emailQuery"]["emailAddress"].as_str());
    let org = queries
        .iter()
        .find_map(|q| q["organizationIdQuery"]["organizationId"].as_str());
    let user_name = queries
        .iter()
        .find_map(|q| q["userNameQuery"]["userName"].as_str());
    let result: Vec<Value> = state
        .users
        .iter()
        .filter(|u| email.is_none_or(|e| u.email == e && !u.machine))
        .filter(|u| user_name.is_none_or(|n| u.email == n) && org.is_none_or(|o| u.org_id == o))
        .map(|u| json!({"userId": u.id, "state": "USER_STATE_ACTIVE", "username": u.email}))
        .collect();
    Json(json!({"details": {"totalResult": result.len().to_string()}, "result": result}))
}

async fn invite(State(state): Shared, Path(user_id): Path<String>) -> Response {
    let mut state = state.lock().unwrap();
    match state.users.iter_mut().find(|u| u.id == user_id) {
        Some(user) => {
            user.invited = true;
            Json(json!({"details": {"sequence": "2"}})).into_response()
        }
        None => zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.User.NotFound"),
    }
}

async fn grant(
    State(state): Shared,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().unwrap();
    let org = headers
        .get("x-zitadel-orgid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let project_id = body["projectId"].as_str().unwrap_or_default();
    if project_id != PROJECT_ID {
        let Some(project) = state.projects.iter().find(|p| p.id == project_id) else {
            return zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.Project.NotFound");
        };
        let known = body["roleKeys"].as_array().into_iter().flatten().all(|r| {
            r.as_str()
                .is_some_and(|r| project.roles.iter().any(|k| k == r))
        });
        if !known {
            return zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.Project.Role.NotFound");
        }
    }
    let Some(user) = state
        .users
        .iter_mut()
        .find(|u| u.id == user_id && u.org_id == org)
    else {
        return zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.User.NotFound");
    };
    if !user.roles.is_empty() {
        return zitadel_error(StatusCode::CONFLICT, 6, "Errors.UserGrant.AlreadyExists");
    }
    user.project = Some(project_id.to_owned());
    user.roles = body["roleKeys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    Json(json!({"userGrantId": format!("grant-{user_id}"), "details": {"sequence": "3"}}))
        .into_response()
}

/// The organization a v1 management call acts on: `x-zitadel-orgid`, which must name one.
/// (Its refusal as status, gRPC code and message key.)
fn header_org(
    state: &State_,
    headers: &HeaderMap,
) -> Result<usize, (StatusCode, i64, &'static str)> {
    let Some(org) = headers.get("x-zitadel-orgid").and_then(|v| v.to_str().ok()) else {
        return Err((StatusCode::BAD_REQUEST, 3, "Errors.Org.IDMissing"));
    };
    state.orgs.iter().position(|o| o.id == org).ok_or((
        StatusCode::NOT_FOUND,
        5,
        "Errors.Org.NotFound",
    ))
}

async fn get_org_metadata(
    State(state): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let state = state.lock().unwrap();
    let org = match header_org(&state, &headers) {
        Ok(org) => &state.orgs[org],
        Err((status, code, key)) => return zitadel_error(status, code, key),
    };
    match org.metadata.get(&key) {
        Some(value) => Json(json!({"metadata": {
            "details": {"sequence": "4", "resourceOwner": org.id},
            "key": key,
            "value": STANDARD.encode(value),
        }}))
        .into_response(),
        None => zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.Metadata.NotFound"),
    }
}

async fn set_org_metadata(
    State(state): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().unwrap();
    let org = match header_org(&state, &headers) {
        Ok(org) => org,
        Err((status, code, key)) => return zitadel_error(status, code, key),
    };
    let decoded = body["value"]
        .as_str()
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok());
    let Some(value) = decoded.filter(|_| !key.is_empty()) else {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.Metadata.Invalid");
    };
    state.orgs[org].metadata.insert(key, value);
    Json(json!({"details": {"sequence": "5"}})).into_response()
}

/// A refusal: status, gRPC code and message key.
type Refusal = (StatusCode, i64, &'static str);

fn refuse((status, code, key): Refusal) -> Response {
    zitadel_error(status, code, key)
}

/// The organization a v1 call acts in: `x-zitadel-orgid`, else the caller's own (the platform
/// organization, where the stand-in's credentials live).
fn acting_org(state: &State_, headers: &HeaderMap) -> Result<String, Refusal> {
    let org = headers
        .get("x-zitadel-orgid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(PLATFORM_ORG_ID);
    if org == PLATFORM_ORG_ID || state.orgs.iter().any(|o| o.id == org) {
        Ok(org.to_owned())
    } else {
        Err((StatusCode::NOT_FOUND, 5, "Errors.Org.NotFound"))
    }
}

async fn my_org() -> Json<Value> {
    Json(json!({"org": {"id": PLATFORM_ORG_ID, "name": "ZITADEL", "state": "ORG_STATE_ACTIVE"}}))
}

/// A `nameQuery` with `TEXT_QUERY_METHOD_EQUALS` (the only method the stand-in implements).
fn name_query(body: &Value) -> Result<Option<String>, Refusal> {
    let Some(query) = body["queries"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|q| q.get("nameQuery"))
    else {
        return Ok(None);
    };
    if query["method"] != json!("TEXT_QUERY_METHOD_EQUALS") {
        return Err((StatusCode::BAD_REQUEST, 3, "Errors.Query.Method"));
    }
    Ok(query["name"].as_str().map(str::to_owned))
}

async fn create_project(
    State(state): Shared,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().unwrap();
    let org_id = match acting_org(&state, &headers) {
        Ok(org) => org,
        Err(refused) => return refuse(refused),
    };
    let Some(name) = body["name"]
        .as_str()
        .filter(|n| !n.is_empty() && n.len() <= 200)
    else {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.Project.Invalid");
    };
    // Project names are unique within an organization.
    if state
        .projects
        .iter()
        .any(|p| p.org_id == org_id && p.name == name)
    {
        return zitadel_error(StatusCode::CONFLICT, 6, "Errors.Project.AlreadyExists");
    }
    let id = state.new_id();
    state.projects.push(Project {
        id: id.clone(),
        org_id,
        name: name.into(),
        role_assertion: body["projectRoleAssertion"] == json!(true),
        roles: Vec::new(),
        apps: Vec::new(),
        web_apps: Vec::new(),
    });
    Json(json!({"id": id, "details": {"sequence": "1"}})).into_response()
}

async fn search_projects(
    State(state): Shared,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let state = state.lock().unwrap();
    let org_id = match acting_org(&state, &headers) {
        Ok(org) => org,
        Err(refused) => return refuse(refused),
    };
    let name = match name_query(&body) {
        Ok(name) => name,
        Err(refused) => return refuse(refused),
    };
    let result: Vec<Value> = state
        .projects
        .iter()
        .filter(|p| p.org_id == org_id && name.as_ref().is_none_or(|n| &p.name == n))
        .map(|p| {
            json!({"id": p.id, "name": p.name, "state": "PROJECT_STATE_ACTIVE",
                        "projectRoleAssertion": p.role_assertion})
        })
        .collect();
    Json(json!({"details": {"totalResult": result.len().to_string()}, "result": result}))
        .into_response()
}

/// The project of the acting organization, for the handlers below.
fn project_mut<'a>(
    state: &'a mut State_,
    headers: &HeaderMap,
    project_id: &str,
) -> Result<&'a mut Project, Refusal> {
    let org_id = acting_org(state, headers)?;
    state
        .projects
        .iter_mut()
        .find(|p| p.id == project_id && p.org_id == org_id)
        .ok_or((StatusCode::NOT_FOUND, 5, "Errors.Project.NotFound"))
}

async fn update_project(
    State(state): Shared,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().unwrap();
    let project = match project_mut(&mut state, &headers, &project_id) {
        Ok(project) => project,
        Err(refused) => return refuse(refused),
    };
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.Project.Invalid");
    };
    let assertion = body["projectRoleAssertion"] == json!(true);
    if project.name == name && project.role_assertion == assertion {
        return zitadel_error(StatusCode::PRECONDITION_FAILED, 9, "Errors.NoChangesFound");
    }
    project.name = name.into();
    project.role_assertion = assertion;
    Json(json!({"details": {"sequence": "2"}})).into_response()
}

async fn add_role(
    State(state): Shared,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().unwrap();
    let project = match project_mut(&mut state, &headers, &project_id) {
        Ok(project) => project,
        Err(refused) => return refuse(refused),
    };
    let key = body["roleKey"].as_str().filter(|k| !k.is_empty());
    let display = body["displayName"].as_str().filter(|d| !d.is_empty());
    let (Some(key), Some(_)) = (key, display) else {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.Project.Role.Invalid");
    };
    if project.roles.iter().any(|r| r == key) {
        return zitadel_error(StatusCode::CONFLICT, 6, "Errors.Project.Role.AlreadyExists");
    }
    project.roles.push(key.into());
    Json(json!({"details": {"sequence": "3"}})).into_response()
}

async fn search_apps(
    State(state): Shared,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().unwrap();
    let name = match name_query(&body) {
        Ok(name) => name,
        Err(refused) => return refuse(refused),
    };
    let project = match project_mut(&mut state, &headers, &project_id) {
        Ok(project) => project,
        Err(refused) => return refuse(refused),
    };
    let wanted = |n: &String| name.as_ref().is_none_or(|name| n == name);
    let api = project.apps.iter().filter(|(_, n, _)| wanted(n)).map(|(id, name, client_id)| {
        json!({"id": id, "name": name, "state": "APP_STATE_ACTIVE",
               "apiConfig": {"clientId": client_id, "authMethodType": "API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT"}})
    });
    let web = project
        .web_apps
        .iter()
        .filter(|(_, n, _)| wanted(n))
        .map(|(id, name, client_id)| {
            json!({"id": id, "name": name, "state": "APP_STATE_ACTIVE",
               "oidcConfig": {"clientId": client_id, "appType": "OIDC_APP_TYPE_WEB"}})
        });
    let result: Vec<Value> = api.chain(web).collect();
    Json(json!({"details": {"totalResult": result.len().to_string()}, "result": result}))
        .into_response()
}

async fn create_api_app(
    State(state): Shared,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().unwrap();
    let app_id = state.new_id();
    let project = match project_mut(&mut state, &headers, &project_id) {
        Ok(project) => project,
        Err(refused) => return refuse(refused),
    };
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.Project.App.Invalid");
    };
    let method = body["authMethodType"]
        .as_str()
        .unwrap_or("API_AUTH_METHOD_TYPE_BASIC");
    if !matches!(
        method,
        "API_AUTH_METHOD_TYPE_BASIC" | "API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT"
    ) {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.Project.App.Invalid");
    }
    if project.apps.iter().any(|(_, n, _)| n == name) {
        return zitadel_error(StatusCode::CONFLICT, 6, "Errors.Project.App.AlreadyExists");
    }
    let client_id = format!("{app_id}@{}", project.name);
    project
        .apps
        .push((app_id.clone(), name.into(), client_id.clone()));
    let mut answer = json!({"appId": app_id, "clientId": client_id, "details": {"sequence": "4"}});
    if method == "API_AUTH_METHOD_TYPE_BASIC" {
        answer["clientSecret"] = json!(format!("secret-{app_id}"));
    }
    Json(answer).into_response()
}

/// A JSON key: `KEY_TYPE_JSON` is the only type ZITADEL offers; the answer carries the key file
/// base64-encoded. The stand-in signs every key file with the client key it verifies.
fn key_type_json(body: &Value) -> Result<(), Refusal> {
    if body["type"] == json!("KEY_TYPE_JSON") {
        Ok(())
    } else {
        Err((StatusCode::BAD_REQUEST, 3, "Errors.Key.Invalid"))
    }
}

async fn add_app_key(
    State(state): Shared,
    Path((project_id, app_id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(refused) = key_type_json(&body) {
        return refuse(refused);
    }
    let mut state = state.lock().unwrap();
    let key_id = state.new_id();
    let project = match project_mut(&mut state, &headers, &project_id) {
        Ok(project) => project,
        Err(refused) => return refuse(refused),
    };
    let Some((_, _, client_id)) = project
        .apps
        .iter()
        .find(|(id, _, _)| *id == app_id)
        .cloned()
    else {
        return zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.Project.App.NotFound");
    };
    state
        .application_keys
        .insert(key_id.clone(), client_id.clone());
    let file = json!({"type": "application", "keyId": key_id, "key": CLIENT_KEY,
                      "appId": app_id, "clientId": client_id});
    Json(
        json!({"id": key_id, "keyDetails": STANDARD.encode(file.to_string()),
                "details": {"sequence": "5"}}),
    )
    .into_response()
}

async fn create_machine(
    State(state): Shared,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().unwrap();
    let org_id = match acting_org(&state, &headers) {
        Ok(org) => org,
        Err(refused) => return refuse(refused),
    };
    let user_name = body["userName"].as_str().filter(|n| !n.is_empty());
    let name = body["name"].as_str().filter(|n| !n.is_empty());
    let (Some(user_name), Some(name)) = (user_name, name) else {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.User.Invalid");
    };
    if !matches!(
        body["accessTokenType"].as_str(),
        None | Some("ACCESS_TOKEN_TYPE_BEARER" | "ACCESS_TOKEN_TYPE_JWT")
    ) {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.User.Invalid");
    }
    if state.users.iter().any(|u| u.email == user_name) {
        return zitadel_error(StatusCode::CONFLICT, 6, "Errors.User.AlreadyExisting");
    }
    let id = state.new_id();
    state.users.push(User {
        id: id.clone(),
        org_id,
        email: user_name.into(),
        given_name: name.into(),
        family_name: String::new(),
        invited: false,
        roles: Vec::new(),
        machine: true,
        project: None,
    });
    Json(json!({"userId": id, "details": {"sequence": "6"}})).into_response()
}

async fn add_machine_key(
    State(state): Shared,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(refused) = key_type_json(&body) {
        return refuse(refused);
    }
    let mut state = state.lock().unwrap();
    let org_id = match acting_org(&state, &headers) {
        Ok(org) => org,
        Err(refused) => return refuse(refused),
    };
    if !state
        .users
        .iter()
        .any(|u| u.id == user_id && u.org_id == org_id && u.machine)
    {
        return zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.User.NotFound");
    }
    let key_id = state.new_id();
    state.machine_keys.insert(key_id.clone(), user_id.clone());
    let file =
        json!({"type": "serviceaccount", "keyId": key_id, "key": CLIENT_KEY, "userId": user_id});
    Json(
        json!({"keyId": key_id, "keyDetails": STANDARD.encode(file.to_string()),
                "details": {"sequence": "7"}}),
    )
    .into_response()
}

async fn add_pat(
    State(state): Shared,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().unwrap();
    let org_id = match acting_org(&state, &headers) {
        Ok(org) => org,
        Err(refused) => return refuse(refused),
    };
    if !state
        .users
        .iter()
        .any(|u| u.id == user_id && u.org_id == org_id && u.machine)
    {
        return zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.User.NotFound");
    }
    let token_id = state.new_id();
    let token = format!("pat-{:032x}", rand::random::<u128>());
    state.pats.insert(token.clone(), user_id);
    Json(json!({"tokenId": token_id, "token": token, "details": {"sequence": "9"}})).into_response()
}

/// The instance manager roles ZITADEL knows.
const INSTANCE_ROLES: [&str; 6] = [
    "IAM_OWNER",
    "IAM_OWNER_VIEWER",
    "IAM_ORG_MANAGER",
    "IAM_USER_MANAGER",
    "IAM_ADMIN_IMPERSONATOR",
    "IAM_END_USER_IMPERSONATOR",
];

async fn add_member(State(state): Shared, Json(body): Json<Value>) -> Response {
    let mut state = state.lock().unwrap();
    let Some(user_id) = body["userId"].as_str() else {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.IAM.MemberInvalid");
    };
    let roles: Vec<String> = body["roles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    if roles.is_empty() || !roles.iter().all(|r| INSTANCE_ROLES.contains(&r.as_str())) {
        return zitadel_error(StatusCode::BAD_REQUEST, 3, "Errors.IAM.MemberInvalid");
    }
    if !state.users.iter().any(|u| u.id == user_id) {
        return zitadel_error(StatusCode::NOT_FOUND, 5, "Errors.User.NotFound");
    }
    if state.members.contains_key(user_id) {
        return zitadel_error(StatusCode::CONFLICT, 6, "Errors.IAM.Member.AlreadyExists");
    }
    state.members.insert(user_id.to_owned(), roles);
    Json(json!({"details": {"sequence": "8"}})).into_response()
}

async fn discovery(State(state): Shared) -> Json<Value> {
    let issuer = state.lock().unwrap().issuer.clone();
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/oauth/v2/keys"),
        "token_endpoint": format!("{issuer}/oauth/v2/token"),
        "authorization_endpoint": format!("{issuer}/oauth/v2/authorize"),
        "end_session_endpoint": format!("{issuer}/oidc/v1/end_session"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email"],
        "introspection_endpoint": format!("{issuer}/oauth/v2/introspect"),
    }))
}

async fn jwks(State(state): Shared) -> Response {
    let down = {
        let mut state = state.lock().unwrap();
        state.jwks_fetches += 1;
        state.jwks_down
    };
    if let Some(delay) = down {
        tokio::time::sleep(delay).await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let state = state.lock().unwrap();
    let mut keys = vec![state.keys[state.active].jwk.clone()];
    if let Some(previous) = state.previous {
        keys.push(state.keys[previous].jwk.clone());
    }
    Json(json!({ "keys": keys })).into_response()
}

/// RFC 7662 as ZITADEL answers it: 401 only when the client fails to authenticate, otherwise
/// `{"active": false}` for anything not known and active.
async fn introspect(
    State(state): Shared,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Json<Value>, StatusCode> {
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let mut state = state.lock().unwrap();
    state.introspections += 1;
    let basic =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    let private_key_jwt = form.get("client_assertion_type").map(String::as_str)
        == Some(CLIENT_ASSERTION_TYPE)
        && form
            .get("client_assertion")
            .is_some_and(|a| valid_assertion(&mut state, a, false));
    if !basic && !private_key_jwt {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let pat_owner = form
        .get("token")
        .and_then(|t| state.pats.get(t))
        .and_then(|id| state.users.iter().find(|u| &u.id == id));
    if let Some(user) = pat_owner {
        let project = user.project.clone().unwrap_or_else(|| PROJECT_ID.into());
        let claims = TokenClaims {
            subject: user.id.clone(),
            org_id: user.org_id.clone(),
            roles: user
                .roles
                .iter()
                .map(|r| (r.clone(), user.org_id.clone()))
                .collect(),
            audience: vec![project.clone()],
            project,
            expires_in: 3600,
            issuer: None,
        };
        let mut answer = ZitadelStandIn::payload(&state, &claims);
        answer["active"] = json!(true);
        return Ok(Json(answer));
    }
    let answer = form
        .get("token")
        .and_then(|t| state.opaque.get(t))
        .filter(|claims| claims["active"] == json!(true))
        .filter(|claims| claims["exp"].as_i64().is_some_and(|exp| exp > now))
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    Ok(Json(answer))
}
