//! The one place errors become HTTP: RFC 9457 problem+json with a stable `code`. A 5xx body says
//! nothing internal; its cause is logged once, here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tenancy_control::ControlError;
use tenancy_zitadel::ManagementError;

use crate::orgs::SyncError;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code (`not_found`, `tenant_exists`, `invalid_request`, ...).
    pub code: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A malformed request: bad JSON, a bad path or query parameter, a wrong content type.
    #[error("{detail}")]
    BadRequest {
        status: StatusCode,
        code: &'static str,
        detail: String,
    },
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no route for {0}")]
    NotFound(String),
    #[error(transparent)]
    Zitadel(#[from] ManagementError),
}

impl From<SyncError> for ApiError {
    fn from(error: SyncError) -> Self {
        match error {
            SyncError::Zitadel(e) => ApiError::Zitadel(e),
            SyncError::Control(e) => ApiError::Control(e),
            SyncError::Busy => ApiError::Control(ControlError::Conflict {
                code: "sync_running",
                detail: error.to_string(),
            }),
        }
    }
}

impl ApiError {
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            detail: detail.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        use ControlError as C;
        match self {
            ApiError::BadRequest {
                status,
                code,
                detail,
            } => (*status, code, detail.clone()),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", self.to_string()),
            ApiError::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", (*why).to_owned()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", self.to_string()),
            ApiError::Zitadel(e) => match e {
                ManagementError::Conflict(detail) => {
                    (StatusCode::CONFLICT, "organization_exists", detail.clone())
                }
                e if e.is_retryable() => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "zitadel_unavailable",
                    "ZITADEL is unavailable; try again shortly".into(),
                ),
                e => (StatusCode::BAD_GATEWAY, "zitadel_error", e.to_string()),
            },
            ApiError::Control(e) => match e {
                C::InvalidId(_) | C::InvalidValue(_) => {
                    (StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
                }
                C::Validation(_) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    e.to_string(),
                ),
                C::TenantNotFound(_) | C::NotFound { .. } => {
                    (StatusCode::NOT_FOUND, "not_found", e.to_string())
                }
                C::Conflict { code, .. } => (StatusCode::CONFLICT, code, e.to_string()),
                C::NoCapacity { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_capacity",
                    e.to_string(),
                ),
                C::TemplateBusy { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "template_busy",
                    e.to_string(),
                ),
                C::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout", e.to_string()),
                C::Registry(sqlx_error) if is_unavailable(sqlx_error) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the registry database is unavailable; try again shortly".into(),
                ),
                C::Server { .. } | C::UnknownServer(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_unavailable",
                    "the tenant's database server is unavailable; try again shortly".into(),
                ),
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".into(),
                ),
            },
        }
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, cause = ?std::error::Error::source(&self), code, "request failed");
        }
        let problem = Problem {
            kind: format!("/problems/{code}"),
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
        };
        let mut response = (status, Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
