//! ZITADEL's management API, called as a service account (machine user): organizations, human
//! users, invitations and project role grants. JSON over HTTP (gRPC-gateway) on the issuer's host.
//!
//! Creates in ZITADEL are not idempotent, so every create here is "create, or find what an
//! earlier attempt made": an 'already exists' answer is followed by a look-up, retried briefly
//! because ZITADEL's read side is eventually consistent.

use std::fmt;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use tracing::{debug, info, instrument};

use crate::discovery::Discovery;
use crate::keyfile::KeyFile;

/// How the service account authenticates.
#[derive(Debug, Clone)]
pub enum ServiceAccount {
    /// A personal access token, sent as is.
    Pat(SecretString),
    /// JWT profile: an assertion signed with the account's key file is exchanged for an access
    /// token at the token endpoint; the token is reused until shortly before it expires.
    KeyFile(KeyFile),
}

/// How list calls page: `query` (older list calls, and `/v2/organizations/_search`) or
/// `pagination` (newer ones). Both carry `{offset, limit, asc}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Paging {
    #[default]
    Query,
    Pagination,
}

#[derive(Debug, Clone)]
pub struct ManagementConfig {
    /// The instance URL; the management API is on the same host.
    pub issuer: String,
    pub account: ServiceAccount,
    pub paging: Paging,
    /// Per request.
    pub timeout: Duration,
    /// How long a look-up right after an 'already exists' keeps retrying before concluding
    /// the thing is absent (the read side lags behind writes).
    pub read_lag: Duration,
}

impl ManagementConfig {
    pub fn new(issuer: impl Into<String>, account: ServiceAccount) -> Self {
        Self {
            issuer: issuer.into(),
            account,
            paging: Paging::default(),
            timeout: Duration::from_secs(10),
            read_lag: Duration::from_secs(3),
        }
    }
}

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    /// ZITADEL answered with an error (`{"code", "message", "details"}`).
    #[error("ZITADEL answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("ZITADEL unreachable: {0}")]
    Unavailable(String),
    #[error("service account credentials: {0}")]
    Credentials(String),
    #[error("unexpected answer from ZITADEL: {0}")]
    Protocol(String),
    #[error("{0}")]
    Conflict(String),
}

impl ManagementError {
    /// Worth retrying later: ZITADEL down, overloaded or rate limiting.
    pub fn is_retryable(&self) -> bool {
        match self {
            ManagementError::Unavailable(_) => true,
            ManagementError::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// 'Already exists' in any of its spellings: 409, or a custom organization id that is
    /// taken (404 with `Errors.Org.AlreadyExisting`).
    pub(crate) fn already_exists(&self) -> bool {
        matches!(self, ManagementError::Api { status: 409, .. })
            || matches!(self, ManagementError::Api { message, .. } if message.contains("AlreadyExist"))
    }

    /// Already in the state asked for: an invitation to a user who has signed up already, a
    /// grant that exists.
    fn already_done(&self) -> bool {
        self.already_exists() || matches!(self, ManagementError::Api { status: 412, .. })
    }
}

/// An organization as the search answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: String,
    pub name: String,
    /// `ORGANIZATION_STATE_ACTIVE`, `ORGANIZATION_STATE_INACTIVE`, `ORGANIZATION_STATE_REMOVED`.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub primary_domain: Option<String>,
}

impl Organization {
    pub fn is_active(&self) -> bool {
        self.state == "ORGANIZATION_STATE_ACTIVE"
    }

    pub fn is_inactive(&self) -> bool {
        self.state == "ORGANIZATION_STATE_INACTIVE"
    }
}

/// A human user to create: ZITADEL requires a given and a family name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanUser {
    pub email: String,
    pub given_name: String,
    pub family_name: String,
}

impl HumanUser {
    /// A user known only by e-mail: the given name is the address's local part and the family
    /// name "Admin"; both can be changed in ZITADEL on first sign-in.
    pub fn from_email(email: &str) -> Self {
        let local = email.split('@').next().unwrap_or(email);
        Self {
            email: email.to_owned(),
            given_name: if local.is_empty() { email } else { local }.to_owned(),
            family_name: "Admin".to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "username": self.email,
            "profile": {"givenName": self.given_name, "familyName": self.family_name},
            "email": {"email": self.email, "sendCode": {}},
        })
    }
}

/// What [`Management::activate_admin`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivatedAdmin {
    pub user_id: String,
    /// False when the user already existed.
    pub created: bool,
}

/// A ZITADEL management API client. Share one per process: it caches the access token.
pub struct Management {
    config: ManagementConfig,
    http: reqwest::Client,
    discovery: Discovery,
    token: tokio::sync::Mutex<Option<(SecretString, Instant)>>,
}

impl fmt::Debug for Management {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Management")
            .field("issuer", &self.discovery.issuer())
            .finish_non_exhaustive()
    }
}

/// Renew a JWT-profile token this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const MANAGEMENT_SCOPE: &str = "openid urn:zitadel:iam:org:project:id:zitadel:aud";
/// ZITADEL's default page size; the most it allows is 1000.
const PAGE: u64 = 100;

impl Management {
    pub fn new(config: ManagementConfig) -> Result<Self, ManagementError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| ManagementError::Unavailable(e.to_string()))?;
        Ok(Self {
            discovery: Discovery::new(&config.issuer),
            config,
            http,
            token: Default::default(),
        })
    }

    // ----- organizations -----

    /// Creates an organization with our own id, or finds the one an earlier attempt created
    /// with that id. `admin`, when given, becomes its owner (`ORG_OWNER`). A different
    /// organization holding the name is a [`ManagementError::Conflict`].
    #[instrument(skip(self, admin), fields(org_id = id))]
    pub async fn create_organization(
        &self,
        id: &str,
        name: &str,
        admin: Option<&HumanUser>,
    ) -> Result<Organization, ManagementError> {
        let mut body = json!({"name": name, "organizationId": id});
        if let Some(admin) = admin {
            body["admins"] = json!([{"human": admin.to_json()}]);
        }
        match self
            .call::<Value>(Method::POST, "/v2/organizations", Some(&body), None)
            .await
        {
            Ok(_) => {
                info!("organization created in ZITADEL");
                Ok(Organization {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    state: "ORGANIZATION_STATE_ACTIVE".into(),
                    primary_domain: None,
                })
            }
            Err(e) if e.already_exists() => {
                match self.eventually(|| self.organization(id)).await? {
                    Some(org) if org.name == name => {
                        debug!("organization exists already (an earlier attempt)");
                        Ok(org)
                    }
                    Some(org) => Err(ManagementError::Conflict(format!(
                        "organization {id} exists in ZITADEL with another name ({:?})",
                        org.name
                    ))),
                    None => Err(ManagementError::Conflict(format!(
                        "an organization named {name:?} already exists in ZITADEL; onboard it by its org_id"
                    ))),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The organization with this id, if any.
    pub async fn organization(&self, id: &str) -> Result<Option<Organization>, ManagementError> {
        let body = json!({"queries": [{"idQuery": {"id": id}}]});
        let page: Page<Organization> = self
            .call(Method::POST, "/v2/organizations/_search", Some(&body), None)
            .await?;
        Ok(page.result.into_iter().find(|o| o.id == id))
    }

    /// Every organization of the instance, page by page.
    pub async fn organizations(&self) -> Result<Vec<Organization>, ManagementError> {
        let field = match self.config.paging {
            Paging::Query => "query",
            Paging::Pagination => "pagination",
        };
        let mut all = Vec::new();
        loop {
            let offset = all.len() as u64;
            let body = json!({ field: {"offset": offset.to_string(), "limit": PAGE, "asc": true} });
            let page: Page<Organization> = self
                .call(Method::POST, "/v2/organizations/_search", Some(&body), None)
                .await?;
            let got = page.result.len();
            all.extend(page.result);
            if got == 0 || all.len() as u64 >= page.details.total_result {
                return Ok(all);
            }
        }
    }

    // ----- users -----

    /// The id of the user with this e-mail address in the organization, if any.
    pub async fn find_user_by_email(
        &self,
        org_id: &str,
        email: &str,
    ) -> Result<Option<String>, ManagementError> {
        let body = json!({"queries": [
            {"emailQuery": {"emailAddress": email}},
            {"organizationIdQuery": {"organizationId": org_id}},
        ]});
        let page: Page<UserRef> = self
            .call(Method::POST, "/v2/users", Some(&body), None)
            .await?;
        Ok(page.result.into_iter().next().map(|u| u.user_id))
    }

    /// Creates the human user in the organization, or finds the one that exists.
    pub async fn ensure_human_user(
        &self,
        org_id: &str,
        user: &HumanUser,
    ) -> Result<(String, bool), ManagementError> {
        if let Some(id) = self.find_user_by_email(org_id, &user.email).await? {
            return Ok((id, false));
        }
        let mut body = user.to_json();
        body["organization"] = json!({"orgId": org_id});
        match self
            .call::<UserRef>(Method::POST, "/v2/users/human", Some(&body), None)
            .await
        {
            Ok(created) => Ok((created.user_id, true)),
            Err(e) if e.already_exists() => {
                match self
                    .eventually(|| self.find_user_by_email(org_id, &user.email))
                    .await?
                {
                    Some(id) => Ok((id, false)),
                    None => Err(ManagementError::Conflict(format!(
                        "ZITADEL says a user {} exists, but no user with that e-mail is in organization {org_id} \
                         (the user name may be taken in another organization)",
                        user.email
                    ))),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Sends the user an invitation (a code to set up their login). A user who has signed up
    /// already counts as invited.
    pub async fn send_invite(&self, user_id: &str) -> Result<(), ManagementError> {
        let path = format!("/v2/users/{user_id}/invite_code");
        let body = json!({"sendCode": {}});
        match self
            .call::<Value>(Method::POST, &path, Some(&body), None)
            .await
        {
            Err(e) if e.already_done() => Ok(()),
            other => other.map(drop),
        }
    }

    // ----- organization metadata -----

    /// The organization's metadata value under `key` (decoded), `None` when it has none.
    pub async fn org_metadata(
        &self,
        org_id: &str,
        key: &str,
    ) -> Result<Option<String>, ManagementError> {
        #[derive(Deserialize)]
        struct Answer {
            metadata: Entry,
        }
        #[derive(Deserialize)]
        struct Entry {
            #[serde(default)]
            value: String,
        }
        let path = format!("/management/v1/metadata/{key}");
        match self
            .call::<Answer>(Method::GET, &path, None, Some(org_id))
            .await
        {
            Ok(answer) => {
                let bytes = BASE64
                    .decode(answer.metadata.value.as_bytes())
                    .map_err(|e| ManagementError::Protocol(format!("metadata {key}: {e}")))?;
                String::from_utf8(bytes)
                    .map(Some)
                    .map_err(|e| ManagementError::Protocol(format!("metadata {key}: {e}")))
            }
            Err(ManagementError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the organization's metadata `key` to `value` (adds or replaces: safe to repeat).
    pub async fn set_org_metadata(
        &self,
        org_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), ManagementError> {
        let path = format!("/management/v1/metadata/{key}");
        let body = json!({"value": BASE64.encode(value.as_bytes())});
        self.call::<Value>(Method::POST, &path, Some(&body), Some(org_id))
            .await
            .map(drop)
    }

    /// Grants project roles to the user in the organization; an existing grant counts as done.
    pub async fn grant_roles(
        &self,
        org_id: &str,
        user_id: &str,
        project_id: &str,
        roles: &[&str],
    ) -> Result<(), ManagementError> {
        let path = format!("/management/v1/users/{user_id}/grants");
        let body = json!({"projectId": project_id, "roleKeys": roles});
        match self
            .call::<Value>(Method::POST, &path, Some(&body), Some(org_id))
            .await
        {
            Err(e) if e.already_exists() => Ok(()),
            other => other.map(drop),
        }
    }

    /// The first admin of an organization: create (or find) the human user, invite them, grant
    /// `role` of the project. Every part is idempotent, so a failed attempt can be repeated.
    #[instrument(skip(self, user), fields(org_id))]
    pub async fn activate_admin(
        &self,
        org_id: &str,
        user: &HumanUser,
        project_id: &str,
        role: &str,
    ) -> Result<ActivatedAdmin, ManagementError> {
        let (user_id, created) = self.ensure_human_user(org_id, user).await?;
        self.send_invite(&user_id).await?;
        self.grant_roles(org_id, &user_id, project_id, &[role])
            .await?;
        info!(user_id, created, "organization admin invited and granted");
        Ok(ActivatedAdmin { user_id, created })
    }

    // ----- plumbing -----

    /// Retries a look-up that found nothing, for a short while (ZITADEL's read side lags).
    pub(crate) async fn eventually<T, F, Fut>(
        &self,
        lookup: F,
    ) -> Result<Option<T>, ManagementError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, ManagementError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(1))
            .with_total_delay(Some(self.config.read_lag))
            .without_max_times();
        let mut lookup = lookup;
        let found = (|| {
            let attempt = lookup();
            async move {
                match attempt.await? {
                    Some(found) => Ok(found),
                    None => Err(Lookup::Absent),
                }
            }
        })
        .retry(backoff)
        .when(|e: &Lookup| matches!(e, Lookup::Absent))
        .await;
        match found {
            Ok(found) => Ok(Some(found)),
            Err(Lookup::Absent) => Ok(None),
            Err(Lookup::Failed(e)) => Err(e),
        }
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        org_id: Option<&str>,
    ) -> Result<T, ManagementError> {
        let mut retried_auth = false;
        loop {
            let token = self.access_token().await?;
            let url = format!("{}{path}", self.discovery.issuer());
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose_secret());
            if let Some(org_id) = org_id {
                request = request.header("x-zitadel-orgid", org_id);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| ManagementError::Unavailable(e.to_string()))?;
            let status = response.status();
            if status.is_success() {
                return response
                    .json()
                    .await
                    .map_err(|e| ManagementError::Protocol(format!("{method} {path}: {e}")));
            }
            // A cached JWT-profile token may have been revoked: get a fresh one, once.
            if status == StatusCode::UNAUTHORIZED
                && !retried_auth
                && matches!(self.config.account, ServiceAccount::KeyFile(_))
            {
                retried_auth = true;
                *self.token.lock().await = None;
                continue;
            }
            let text = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ApiErrorBody>(&text)
                .ok()
                .and_then(|b| b.message)
                .unwrap_or(text);
            debug!(%method, path, status = status.as_u16(), message, "ZITADEL error");
            return Err(ManagementError::Api {
                status: status.as_u16(),
                message,
            });
        }
    }

    async fn access_token(&self) -> Result<SecretString, ManagementError> {
        let key = match &self.config.account {
            ServiceAccount::Pat(pat) => return Ok(pat.clone()),
            ServiceAccount::KeyFile(key) => key,
        };
        let mut cached = self.token.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() + TOKEN_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let endpoint = self
            .discovery
            .endpoints(&self.http)
            .await
            .map_err(ManagementError::Unavailable)?
            .token_endpoint
            .clone()
            .ok_or_else(|| ManagementError::Protocol("discovery names no token endpoint".into()))?;
        let assertion = key
            .assertion(self.discovery.issuer(), Duration::from_secs(3600))
            .map_err(|e| ManagementError::Credentials(e.to_string()))?;
        let response = self
            .http
            .post(&endpoint)
            .form(&[
                ("grant_type", JWT_BEARER),
                ("assertion", &assertion),
                ("scope", MANAGEMENT_SCOPE),
            ])
            .send()
            .await
            .map_err(|e| ManagementError::Unavailable(e.to_string()))?;
        let status = response.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ManagementError::Api {
                status: status.as_u16(),
                message: "token endpoint unavailable".into(),
            });
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(ManagementError::Credentials(format!(
                "the token endpoint refused the service account key ({status}): {text}"
            )));
        }
        let grant: TokenGrant = response
            .json()
            .await
            .map_err(|e| ManagementError::Protocol(format!("token answer: {e}")))?;
        let token = SecretString::from(grant.access_token);
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(grant.expires_in.unwrap_or(3600)),
        ));
        debug!("service account token obtained");
        Ok(token)
    }
}

enum Lookup {
    Absent,
    Failed(ManagementError),
}

impl From<ManagementError> for Lookup {
    fn from(e: ManagementError) -> Self {
        Lookup::Failed(e)
    }
}

#[derive(Deserialize)]
struct TokenGrant {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserRef {
    pub(crate) user_id: String,
}

#[derive(Deserialize)]
pub(crate) struct Page<T> {
    #[serde(default)]
    details: PageDetails,
    #[serde(default = "Vec::new")]
    pub(crate) result: Vec<T>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageDetails {
    #[serde(default, deserialize_with = "lenient_u64")]
    total_result: u64,
}

/// gRPC-gateway writes 64-bit integers as JSON strings; accept numbers too.
fn lenient_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Number(u64),
        Text(String),
    }
    match Lenient::deserialize(deserializer)? {
        Lenient::Number(n) => Ok(n),
        Lenient::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_fields_are_read_as_strings_or_numbers() {
        let page: Page<Organization> = serde_json::from_str(
            r#"{"details": {"totalResult": "2"}, "result": [{"id": "1", "name": "A", "state": "ORGANIZATION_STATE_ACTIVE"}]}"#,
        )
        .unwrap();
        assert_eq!(page.details.total_result, 2);
        assert!(page.result[0].is_active());
        let page: Page<Organization> =
            serde_json::from_str(r#"{"details": {"totalResult": 0}}"#).unwrap();
        assert_eq!(page.details.total_result, 0);
        assert!(page.result.is_empty());
    }

    #[test]
    fn a_user_known_by_email_gets_names_zitadel_accepts() {
        let user = HumanUser::from_email("jane.doe@acme.example");
        assert_eq!(user.given_name, "jane.doe");
        assert_eq!(user.family_name, "Admin");
    }

    #[test]
    fn errors_are_classified() {
        let api = |status, message: &str| ManagementError::Api {
            status,
            message: message.into(),
        };
        assert!(api(503, "x").is_retryable() && api(429, "x").is_retryable());
        assert!(!api(400, "x").is_retryable() && !api(409, "x").is_retryable());
        assert!(api(409, "Errors.User.AlreadyExisting").already_exists());
        assert!(api(404, "Errors.Org.AlreadyExisting (V2-1)").already_exists());
        assert!(!api(404, "Errors.Org.NotFound").already_exists());
        assert!(api(412, "Errors.User.AlreadyInitialised").already_done());
    }
}
