//! axum extractors (feature `axum`): the tenant a request acts in, and a connection to it.
//!
//! The authentication layer puts a [`tenancy_zitadel::Caller`] in the request extensions; the
//! handler state gives the [`TenantRouter`] through `FromRef`:
//!
//! ```ignore
//! async fn list_tickets(TenantConnection(db): TenantConnection) -> Result<Json<Vec<Ticket>>, ...> {
//!     let rows = db.query("SELECT id, title FROM tickets", &[]).await?;
//!     ...
//! }
//!
//! async fn whoami(CurrentTenant(tenant): CurrentTenant) -> String {
//!     format!("{} ({}), via {:?}", tenant.org_id, tenant.kind, tenant.via_agency)
//! }
//! ```
//!
//! Both act in the caller's own organization, or in the client an agency's caller names in
//! [`TENANT_HEADER`] (`X-Tenant-Id`), checked against the registry's answer for it: see
//! [`TenantContext`]. A name the caller may not use is 403, whether or not that tenant exists.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use tenancy_core::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem, TenantKind, TenantPlace};
use tenancy_zitadel::{Caller, ContextError};
pub use tenancy_zitadel::{TENANT_HEADER, TenantContext};

use crate::{RouterError, TenantClient, TenantRouter};

/// A pooled connection to the database of the tenant the request acts in (the caller's own
/// organization, or the client its agency's caller names).
pub struct TenantConnection(pub TenantClient);

/// The tenant the request acts in: its kind, its agency, and the caller's roles there.
pub struct CurrentTenant(pub TenantContext);

/// Why no connection was given, as an HTTP answer: the same problem+json, with the same
/// stable codes, as the registry's errors.
#[derive(Debug)]
pub struct Rejection {
    code: ErrorCode,
    detail: String,
}

impl Rejection {
    fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let problem = Problem::new(self.code, self.detail);
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [("content-type", PROBLEM_CONTENT_TYPE)],
            serde_json::to_string(&problem).unwrap_or_default(),
        )
            .into_response()
    }
}

impl From<RouterError> for Rejection {
    fn from(error: RouterError) -> Self {
        let code = match &error {
            RouterError::UnknownTenant(_) => ErrorCode::TenantUnknown,
            RouterError::Suspended(_) => ErrorCode::TenantSuspended,
            RouterError::Deleted(_) => ErrorCode::TenantDeleted,
            RouterError::NotActive { .. } => ErrorCode::TenantNotReady,
            RouterError::PoolTimeout { .. } => ErrorCode::PoolTimeout,
            RouterError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            RouterError::InvalidQuota(_) => ErrorCode::ValidationFailed,
            RouterError::ServerUnavailable { .. }
            | RouterError::Registry(_)
            | RouterError::Tls { .. } => ErrorCode::DatabaseUnavailable,
        };
        // 5xx details stay generic (Problem::new): the cause is logged, not sent.
        if code.is_server_error() {
            tracing::warn!(error = %error, "no tenant connection");
        }
        Rejection::new(code, error.to_string())
    }
}

impl From<ContextError> for Rejection {
    fn from(error: ContextError) -> Self {
        let code = match &error {
            ContextError::NoOrganization => ErrorCode::NoOrganization,
            ContextError::InvalidHeader(_) => ErrorCode::InvalidRequest,
            ContextError::NotYourClient { .. }
            | ContextError::NoAgencyRole(_)
            | ContextError::MissingRole { .. }
            | ContextError::AgencyNotActive { .. } => ErrorCode::Forbidden,
        };
        Rejection::new(code, error.to_string())
    }
}

/// The request's tenant context, decided once per request (later extractors reuse it).
async fn tenant_context(
    parts: &mut Parts,
    router: &TenantRouter,
) -> Result<TenantContext, Rejection> {
    if let Some(context) = parts.extensions.get::<TenantContext>() {
        return Ok(context.clone());
    }
    let caller = parts
        .extensions
        .get::<Caller>()
        .ok_or_else(|| Rejection::new(ErrorCode::Unauthorized, "no verified caller"))?;
    let requested = TenantContext::requested(&parts.headers)?;
    TenantContext::precheck(caller, requested.as_ref())?;
    let target = TenantContext::target(caller, requested.as_ref())?;
    let place = match router.place(&target).await {
        Ok(place) => place,
        // Another organization that does not exist is refused like one that is not the
        // caller's client: the answer tells nothing about which tenants exist.
        Err(RouterError::UnknownTenant(_)) if caller.org_id.as_ref() != Some(&target) => {
            TenantPlace {
                kind: TenantKind::Standalone,
                parent_org_id: None,
                agency_status: None,
            }
        }
        Err(error) => return Err(error.into()),
    };
    let context = TenantContext::decide(caller, &target, place)?;
    parts.extensions.insert(context.clone());
    Ok(context)
}

impl<S> FromRequestParts<S> for CurrentTenant
where
    TenantRouter: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let router = TenantRouter::from_ref(state);
        Ok(CurrentTenant(tenant_context(parts, &router).await?))
    }
}

impl<S> FromRequestParts<S> for TenantConnection
where
    TenantRouter: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let router = TenantRouter::from_ref(state);
        let context = tenant_context(parts, &router).await?;
        Ok(TenantConnection(router.get(&context.org_id).await?))
    }
}
