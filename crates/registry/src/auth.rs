//! Authentication behind a trait: the registry asks an [`Authenticator`] to turn a bearer token
//! into a verified [`Caller`]. `make run` uses the static development token; the ZITADEL
//! verifier plugs in the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tenancy_control::Actor;
use tenancy_zitadel::{Caller, roles};

use crate::error::ApiError;

/// Why a token gave no caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Not a token this authenticator accepts (401).
    Refused,
    /// The token could not be checked right now: the identity provider is unreachable or
    /// rate-limited (503; the caller tries again).
    Unavailable,
}

/// Turns a bearer token into a verified caller, or refuses it. `client` is the address the
/// request came from (when known), for per-client limits.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        client: Option<IpAddr>,
    ) -> Pin<Box<dyn Future<Output = Result<Caller, AuthError>> + Send + 'a>>;
}

/// The shortest development token accepted.
pub const MIN_DEV_TOKEN_LEN: usize = 32;

/// One static token with every role: for local development, on a loopback address only.
pub struct DevToken {
    digest: [u8; 32],
}

impl DevToken {
    /// Refuses tokens shorter than [`MIN_DEV_TOKEN_LEN`] characters.
    pub fn new(token: &SecretString) -> Result<Self, String> {
        let length = token.expose_secret().chars().count();
        if length < MIN_DEV_TOKEN_LEN {
            return Err(format!(
                "the development token must be at least {MIN_DEV_TOKEN_LEN} characters, not {length}"
            ));
        }
        Ok(Self {
            digest: Sha256::digest(token.expose_secret().as_bytes()).into(),
        })
    }
}

impl Authenticator for DevToken {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        _client: Option<IpAddr>,
    ) -> Pin<Box<dyn Future<Output = Result<Caller, AuthError>> + Send + 'a>> {
        // Comparing digests keeps the comparison's timing independent of the secret.
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let ok = presented
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        Box::pin(async move {
            if !ok {
                return Err(AuthError::Refused);
            }
            let everywhere: BTreeSet<_> = ["dev".parse().expect("valid org id")].into();
            Ok(Caller {
                subject: "dev".into(),
                org_id: None,
                roles: BTreeMap::from([
                    (roles::PLATFORM_ADMIN.to_owned(), everywhere.clone()),
                    (roles::TENANT_ROUTER.to_owned(), everywhere),
                ]),
            })
        })
    }
}

/// ZITADEL access tokens: JWTs verified against the JWKS, opaque tokens introspected.
impl Authenticator for tenancy_zitadel::Verifier {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        client: Option<IpAddr>,
    ) -> Pin<Box<dyn Future<Output = Result<Caller, AuthError>> + Send + 'a>> {
        Box::pin(async move {
            self.verify_from(token, client).await.map_err(|e| {
                if e.is_refusal() {
                    tracing::info!(error = %e, "ZITADEL token refused");
                    AuthError::Refused
                } else {
                    tracing::warn!(error = %e, "ZITADEL token not verified");
                    AuthError::Unavailable
                }
            })
        })
    }
}

/// The verified caller of this request, with the request id for the audit log.
pub struct Authenticated {
    pub caller: Caller,
    pub request_id: Option<String>,
}

impl Authenticated {
    pub fn actor(&self) -> Actor {
        Actor {
            subject: self.caller.subject.clone(),
            org_id: self.caller.org_id.as_ref().map(ToString::to_string),
            request_id: self.request_id.clone(),
        }
    }

    pub fn require_platform_admin(&self) -> Result<(), ApiError> {
        if self.caller.is_platform_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this action needs the platform_admin role",
            ))
        }
    }

    pub fn require_tenant_read(&self, org: &tenancy_core::OrgId) -> Result<(), ApiError> {
        if self.caller.can_read_tenant(org) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "you may read your own organization's tenant only",
            ))
        }
    }

    /// Platform admins, and the organization's own tenant admins.
    pub fn require_tenant_admin(&self, org: &tenancy_core::OrgId) -> Result<(), ApiError> {
        if self.caller.can_read_tenant(org) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this needs platform_admin, or tenant_admin of this organization",
            ))
        }
    }

    /// Router services, platform admins, and the organization's own tenant admins.
    pub fn require_tenant_or_router(&self, org: &tenancy_core::OrgId) -> Result<(), ApiError> {
        if self.caller.can_route() {
            Ok(())
        } else {
            self.require_tenant_read(org)
        }
    }

    /// Platform admins, the tenant's own admins, and, for a client, its agency's admins: who may
    /// read a tenant, its operations, usage, quotas and health.
    pub async fn require_tenant_or_agency(
        &self,
        engine: &tenancy_control::Engine,
        org: &tenancy_core::OrgId,
    ) -> Result<(), ApiError> {
        if self.may_read_tenant(engine, org).await? {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "you may read your own organization's tenant (and, for an agency, its clients) only",
            ))
        }
    }

    /// Who may read a tenant's quotas and usage log: router services (which check before acting)
    /// and whoever may read the tenant.
    pub async fn require_quota_reader(
        &self,
        engine: &tenancy_control::Engine,
        org: &tenancy_core::OrgId,
    ) -> Result<(), ApiError> {
        if self.caller.can_route() {
            Ok(())
        } else {
            self.require_tenant_or_agency(engine, org).await
        }
    }

    /// See [`Authenticated::require_tenant_or_agency`].
    pub async fn may_read_tenant(
        &self,
        engine: &tenancy_control::Engine,
        org: &tenancy_core::OrgId,
    ) -> Result<bool, ApiError> {
        Ok(self.caller.can_read_tenant(org) || self.admin_of_agency(engine, org).await?)
    }

    /// Platform admins, and a client's agency's admins: who may suspend or resume a tenant,
    /// and as whom (a platform admin's suspension is not the agency's to lift).
    pub async fn require_platform_or_agency_admin(
        &self,
        engine: &tenancy_control::Engine,
        org: &tenancy_core::OrgId,
    ) -> Result<tenancy_core::SuspendedBy, ApiError> {
        if self.caller.is_platform_admin() {
            Ok(tenancy_core::SuspendedBy::Platform)
        } else if self.admin_of_agency(engine, org).await? {
            Ok(tenancy_core::SuspendedBy::Agency)
        } else {
            Err(ApiError::Forbidden(
                "this needs platform_admin, or tenant_admin of the tenant's agency",
            ))
        }
    }

    /// Whether the caller is a tenant admin of the agency `org` is a client of. An unknown
    /// tenant has no agency (the caller is refused as for any other organization's).
    async fn admin_of_agency(
        &self,
        engine: &tenancy_control::Engine,
        org: &tenancy_core::OrgId,
    ) -> Result<bool, ApiError> {
        if !self.caller.has_role(roles::TENANT_ADMIN) {
            return Ok(false);
        }
        match engine.tenant(org).await {
            Ok(tenant) => Ok(tenant
                .parent_org_id
                .is_some_and(|agency| self.caller.has_role_in(roles::TENANT_ADMIN, &agency))),
            Err(tenancy_control::ControlError::TenantNotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Router services only (`tenant_router`), platform admins not: tenants' connection
    /// passwords are for the services that connect, never for people.
    pub fn require_router_service(&self) -> Result<(), ApiError> {
        if self.caller.is_router_service() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "connection info is for router services (the tenant_router role) only",
            ))
        }
    }

    pub fn require_router(&self) -> Result<(), ApiError> {
        if self.caller.can_route() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this needs the tenant_router role"))
        }
    }
}

/// Every way a bearer token is accepted, tried in order.
#[derive(Clone, Default)]
pub struct Authenticators(pub Arc<Vec<Arc<dyn Authenticator>>>);

impl<S> FromRequestParts<S> for Authenticated
where
    Authenticators: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let authenticators = Authenticators::from_ref(state);
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        let caller = authenticate(&authenticators.0, token, client)
            .await
            .map_err(|e| match e {
                AuthError::Refused => ApiError::Unauthorized,
                AuthError::Unavailable => ApiError::IdentityUnavailable,
            })?;
        tracing::Span::current().record("subject", caller.subject.as_str());
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Authenticated { caller, request_id })
    }
}

/// A token verified exactly as a bearer token of the API is (the console's sign-in).
pub async fn authenticate_token(
    authenticators: &Authenticators,
    token: &str,
) -> Result<Caller, AuthError> {
    authenticate(&authenticators.0, token, None).await
}

/// The first authenticator that accepts the token; unavailable when none did and one could not
/// tell.
async fn authenticate(
    authenticators: &[Arc<dyn Authenticator>],
    token: &str,
    client: Option<IpAddr>,
) -> Result<Caller, AuthError> {
    let mut outcome = AuthError::Refused;
    for authenticator in authenticators {
        match authenticator.authenticate(token, client).await {
            Ok(caller) => return Ok(caller),
            Err(AuthError::Unavailable) => outcome = AuthError::Unavailable,
            Err(AuthError::Refused) => {}
        }
    }
    Err(outcome)
}
