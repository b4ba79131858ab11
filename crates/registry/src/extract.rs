//! axum's `Json`, `Path` and `Query`, with rejections answered as problem+json.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use tenancy_core::ErrorCode;

use crate::error::ApiError;

pub struct Json<T>(pub T);
pub struct Path<T>(pub T);
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let code = match &rejection {
        JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ErrorCode::BodyTooLarge
        }
        // JSON of the wrong shape (unknown fields, invalid identifiers) is well-formed but
        // refused; a body that is not JSON at all cannot be read.
        JsonRejection::JsonDataError(_) => ErrorCode::ValidationFailed,
        _ => ErrorCode::InvalidRequest,
    };
    ApiError::Refused {
        code,
        detail: rejection.body_text(),
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection: PathRejection| ApiError::invalid(rejection.body_text()))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection: QueryRejection| ApiError::invalid(rejection.body_text()))
    }
}

/// Parses a duration query parameter: `30s`, `1m`, or plain seconds (`30`), at most `max`.
pub fn duration_param(
    value: Option<&str>,
    default: std::time::Duration,
    max: std::time::Duration,
) -> Result<std::time::Duration, ApiError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let parsed = match value.parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(value).map_err(|_| {
            ApiError::invalid(format!(
                "invalid duration {value:?}: use 30s, 2m or seconds"
            ))
        })?,
    };
    if parsed > max {
        return Err(ApiError::invalid(format!(
            "duration {value} is longer than the maximum {}",
            humantime::format_duration(max)
        )));
    }
    Ok(parsed)
}
