//! axum extractor (feature `axum`): the verified caller's tenant connection.
//!
//! The authentication layer puts a [`tenancy_zitadel::Caller`] in the request extensions; the
//! handler state gives the [`TenantRouter`] through `FromRef`:
//!
//! ```ignore
//! async fn list_tickets(TenantConnection(db): TenantConnection) -> Result<Json<Vec<Ticket>>, ...> {
//!     let rows = db.query("SELECT id, title FROM tickets", &[]).await?;
//!     ...
//! }
//! ```

use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use tenancy_core::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem};
use tenancy_zitadel::Caller;

use crate::{RouterError, TenantClient, TenantRouter};

/// A pooled connection to the database of the caller's own organization.
pub struct TenantConnection(pub TenantClient);

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

impl<S> FromRequestParts<S> for TenantConnection
where
    TenantRouter: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .ok_or_else(|| Rejection::new(ErrorCode::Unauthorized, "no verified caller"))?;
        let org_id = caller.org_id.clone().ok_or_else(|| {
            Rejection::new(
                ErrorCode::NoOrganization,
                "the caller's token names no organization",
            )
        })?;
        let router = TenantRouter::from_ref(state);
        Ok(TenantConnection(router.get(&org_id).await?))
    }
}
