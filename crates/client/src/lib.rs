//! A typed client of the registry API, for services, tools and tests: every request and answer
//! is a `tenancy-core` type, and every refusal the registry's problem (`ErrorCode` and detail),
//! so no caller builds a path or reads a raw JSON value.
//!
//! ```no_run
//! # async fn example() -> Result<(), tenancy_client::ClientError> {
//! use std::time::Duration;
//! use tenancy_client::{Onboarding, RegistryClient};
//! use tenancy_core::CreateTenant;
//!
//! let registry = RegistryClient::new("http://127.0.0.1:8080", "development-token");
//! let request = CreateTenant::new("263014839178313731".parse()?, "Acme Corp".parse()?);
//! match registry.onboard(&request, Some(Duration::from_secs(30))).await? {
//!     Onboarding::Active(tenant) | Onboarding::Existing(tenant) => println!("{}", tenant.db_name),
//!     Onboarding::Accepted(operation) => println!("still provisioning: {}", operation.id),
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tenancy_core::{
    ConnectionInfo, CreateTenant, ErrorCode, MoveTenant, Operation, OperationState, OrgId, Problem,
    PutSetting, QuotaStatus, Setting, SettingKey, Tenant, UpdateTenant,
};
use uuid::Uuid;

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry answered with a problem.
    #[error("{status}: {} ({})", .problem.detail, .problem.code)]
    Refused {
        status: StatusCode,
        problem: Problem,
    },
    /// The registry could not be reached, or answered something that is not the API's.
    #[error("registry: {0}")]
    Http(#[from] reqwest::Error),
    /// An operation did not end within the wait.
    #[error("operation {0} did not end within {1:?}")]
    Timeout(Uuid, Duration),
    /// An identifier given to the client is not valid.
    #[error(transparent)]
    InvalidId(#[from] tenancy_core::IdError),
}

impl ClientError {
    /// The registry's error code, when it refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { problem, .. } => Some(problem.code),
            _ => None,
        }
    }
}

/// What an onboarding request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Onboarding {
    /// Made, and active within the wait (201).
    Active(Tenant),
    /// The same request was made before (200).
    Existing(Tenant),
    /// Made; its provisioning is under way (202).
    Accepted(Operation),
}

/// The registry API, as one caller (a bearer token). Cheap to clone.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl RegistryClient {
    /// The registry at `base` (`http://host:port`), calling with `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self::with_http(reqwest::Client::new(), base, token)
    }

    /// As [`RegistryClient::new`], with this HTTP client (one that trusts a private CA, say).
    pub fn with_http(
        http: reqwest::Client,
        base: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            token: token.into(),
        }
    }

    /// The same registry, as another caller.
    pub fn as_caller(&self, token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            ..self.clone()
        }
    }

    /// `POST /v1/tenants`, waiting up to `wait` for the tenant to be active.
    pub async fn onboard(
        &self,
        request: &CreateTenant,
        wait: Option<Duration>,
    ) -> Result<Onboarding, ClientError> {
        let path = match wait {
            Some(wait) => format!("/v1/tenants?wait={}ms", wait.as_millis()),
            None => "/v1/tenants".to_owned(),
        };
        let response = self.send(Method::POST, &path, Some(request)).await?;
        match response.status() {
            StatusCode::CREATED => Ok(Onboarding::Active(response.json().await?)),
            StatusCode::OK => Ok(Onboarding::Existing(response.json().await?)),
            _ => Ok(Onboarding::Accepted(response.json().await?)),
        }
    }

    /// `GET /v1/tenants/{org_id}`.
    pub async fn tenant(&self, org_id: &OrgId) -> Result<Tenant, ClientError> {
        self.call(Method::GET, &format!("/v1/tenants/{org_id}"), None::<&()>)
            .await
    }

    /// `PATCH /v1/tenants/{org_id}`.
    pub async fn update(
        &self,
        org_id: &OrgId,
        update: &UpdateTenant,
    ) -> Result<Tenant, ClientError> {
        self.call(
            Method::PATCH,
            &format!("/v1/tenants/{org_id}"),
            Some(update),
        )
        .await
    }

    /// `POST /v1/tenants/{org_id}/suspend`.
    pub async fn suspend(&self, org_id: &OrgId) -> Result<Operation, ClientError> {
        self.operation_of(org_id, "suspend").await
    }

    /// `POST /v1/tenants/{org_id}/resume`.
    pub async fn resume(&self, org_id: &OrgId) -> Result<Operation, ClientError> {
        self.operation_of(org_id, "resume").await
    }

    /// `POST /v1/tenants/{org_id}/rotate-credentials`.
    pub async fn rotate_credentials(&self, org_id: &OrgId) -> Result<Operation, ClientError> {
        self.operation_of(org_id, "rotate-credentials").await
    }

    /// `POST /v1/tenants/{org_id}/move`.
    pub async fn move_tenant(
        &self,
        org_id: &OrgId,
        request: &MoveTenant,
    ) -> Result<Operation, ClientError> {
        let path = format!("/v1/tenants/{org_id}/move");
        self.call(Method::POST, &path, Some(request)).await
    }

    /// `DELETE /v1/tenants/{org_id}`.
    pub async fn delete(&self, org_id: &OrgId) -> Result<Operation, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/v1/tenants/{org_id}"),
            None::<&()>,
        )
        .await
    }

    /// `GET /v1/tenants/{org_id}/connection`.
    pub async fn connection(&self, org_id: &OrgId) -> Result<ConnectionInfo, ClientError> {
        let path = format!("/v1/tenants/{org_id}/connection");
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `GET /v1/tenants/{org_id}/quotas`.
    pub async fn quotas(&self, org_id: &OrgId) -> Result<Vec<QuotaStatus>, ClientError> {
        let path = format!("/v1/tenants/{org_id}/quotas");
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// `PUT /v1/tenants/{org_id}/settings/{key}`.
    pub async fn put_setting(
        &self,
        org_id: &OrgId,
        key: &SettingKey,
        value: &PutSetting,
    ) -> Result<Setting, ClientError> {
        let path = format!("/v1/tenants/{org_id}/settings/{key}");
        self.call(Method::PUT, &path, Some(value)).await
    }

    /// `GET /v1/operations/{id}`.
    pub async fn operation(&self, id: Uuid) -> Result<Operation, ClientError> {
        self.call(Method::GET, &format!("/v1/operations/{id}"), None::<&()>)
            .await
    }

    /// The operation once it has ended (succeeded or failed), asked every 100 ms for up to
    /// `timeout`.
    pub async fn wait_operation(
        &self,
        id: Uuid,
        timeout: Duration,
    ) -> Result<Operation, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let operation = self.operation(id).await?;
            if matches!(
                operation.state,
                OperationState::Succeeded | OperationState::Failed
            ) {
                return Ok(operation);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Timeout(id, timeout));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn operation_of(&self, org_id: &OrgId, action: &str) -> Result<Operation, ClientError> {
        let path = format!("/v1/tenants/{org_id}/{action}");
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// A call whose successful answer is `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        Ok(self.send(method, path, body).await?.json().await?)
    }

    /// Sends a call; a problem answer is [`ClientError::Refused`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let problem = response.json::<Problem>().await?;
        Err(ClientError::Refused { status, problem })
    }
}
