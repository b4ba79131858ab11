//! The one place errors become HTTP: an RFC 9457 problem with a stable `code`
//! (`tenancy_core::ErrorCode`, which also decides the status). A 5xx body says nothing internal;
//! its cause is logged once, here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tenancy_control::ControlError;
use tenancy_core::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem};
use tenancy_zitadel::ManagementError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A request refused before it reached the engine: bad JSON, a bad path or query parameter,
    /// a wrong content type, a body too large.
    #[error("{detail}")]
    Refused { code: ErrorCode, detail: String },
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// The token could not be verified right now (the identity provider is unreachable).
    #[error("the identity provider is unavailable")]
    IdentityUnavailable,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error(transparent)]
    Zitadel(#[from] ManagementError),
}

impl ApiError {
    /// A malformed request (400 `invalid_request`).
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::Refused {
            code: ErrorCode::InvalidRequest,
            detail: detail.into(),
        }
    }

    /// A body that breaks its schema (422 `validation_failed`).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        ApiError::Refused {
            code: ErrorCode::ValidationFailed,
            detail: detail.into(),
        }
    }

    /// The stable code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Control(e) => e.code(),
            ApiError::Refused { code, .. } => *code,
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::IdentityUnavailable => ErrorCode::ZitadelUnavailable,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::NoRoute(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::Zitadel(ManagementError::Conflict(_)) => ErrorCode::OrganizationExists,
            ApiError::Zitadel(e) if e.is_retryable() => ErrorCode::ZitadelUnavailable,
            ApiError::Zitadel(_) => ErrorCode::ZitadelError,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if code.is_server_error() {
            tracing::error!(error = %self, cause = ?std::error::Error::source(&self), %code, "request failed");
        }
        let problem = match &self {
            ApiError::Control(ControlError::QuotaExceeded { quota, .. }) => {
                Problem::quota_exceeded(self.to_string(), quota)
            }
            ApiError::Control(ControlError::OutsideRestoreWindow { window, .. }) => {
                Problem::outside_restore_window(self.to_string(), window)
            }
            _ => Problem::new(code, self.to_string()),
        };
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
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
