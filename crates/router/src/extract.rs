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
use tenancy_zitadel::Caller;

use crate::{RouterError, TenantClient, TenantRouter};

/// A pooled connection to the database of the caller's own organization.
pub struct TenantConnection(pub TenantClient);

/// Why no connection was given, as an HTTP answer (problem+json with a stable code).
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    code: &'static str,
    detail: String,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("/problems/{}", self.code),
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        (
            self.status,
            [("content-type", "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<RouterError> for Rejection {
    fn from(error: RouterError) -> Self {
        let (status, code) = match &error {
            RouterError::UnknownTenant(_) => (StatusCode::NOT_FOUND, "tenant_unknown"),
            RouterError::Suspended(_) => (StatusCode::FORBIDDEN, "tenant_suspended"),
            RouterError::Deleted(_) => (StatusCode::GONE, "tenant_deleted"),
            RouterError::NotActive { .. } => (StatusCode::SERVICE_UNAVAILABLE, "tenant_not_ready"),
            RouterError::PoolTimeout { .. } => (StatusCode::SERVICE_UNAVAILABLE, "pool_timeout"),
            RouterError::ServerUnavailable { .. } | RouterError::Registry(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
            }
        };
        // 5xx details stay generic: the cause is logged, not sent.
        let detail = if status.is_server_error() {
            "the tenant database is unavailable; try again".into()
        } else {
            error.to_string()
        };
        if status.is_server_error() {
            tracing::warn!(error = %error, "no tenant connection");
        }
        Rejection {
            status,
            code,
            detail,
        }
    }
}

impl<S> FromRequestParts<S> for TenantConnection
where
    TenantRouter: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let caller = parts.extensions.get::<Caller>().ok_or(Rejection {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            detail: "no verified caller".into(),
        })?;
        let org_id = caller.org_id.clone().ok_or(Rejection {
            status: StatusCode::FORBIDDEN,
            code: "no_organization",
            detail: "the caller's token names no organization".into(),
        })?;
        let router = TenantRouter::from_ref(state);
        Ok(TenantConnection(router.get(&org_id).await?))
    }
}
