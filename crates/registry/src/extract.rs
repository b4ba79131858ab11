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

/// Every request body is a JSON object. serde would also read a struct from an array of its
/// fields in order (`[null, null]`), which the OpenAPI document does not allow.
impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|rejection| json_rejection(rejection, limit))?;
        if !value.is_object() {
            return Err(ApiError::Refused {
                code: ErrorCode::ValidationFailed,
                detail: "the request body must be a JSON object".into(),
            });
        }
        serde_path_to_error::deserialize(value)
            .map(Json)
            .map_err(|error| ApiError::Refused {
                code: ErrorCode::ValidationFailed,
                detail: match error.path().to_string().as_str() {
                    "." => error.inner().to_string(),
                    path => format!("{path}: {}", error.inner()),
                },
            })
    }
}

/// The largest request body the service takes, in bytes (`TENANCY_MAX_BODY`), for the answer
/// to one that is larger.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn json_rejection(rejection: JsonRejection, limit: Option<BodyLimit>) -> ApiError {
    match &rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::Refused {
            code: ErrorCode::UnsupportedMediaType,
            detail: rejection.body_text(),
        },
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::Refused {
                code: ErrorCode::BodyTooLarge,
                detail: match limit {
                    Some(BodyLimit(bytes)) => {
                        format!("the request body is larger than the limit of {bytes} bytes")
                    }
                    None => rejection.body_text(),
                },
            }
        }
        _ => ApiError::invalid(rejection.body_text()),
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

/// A `wait` query parameter: digits and a unit (`500ms`, `30s`, `1m`), like every duration
/// the service takes; digits alone are refused. A route waits at most its own maximum: a longer wait is shortened, never refused,
/// so every value the OpenAPI pattern allows is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Wait(std::time::Duration);

impl Wait {
    const PATTERN: &'static str = r"^[0-9]{1,6}(ms|s|m)$";

    /// The wait, shortened to `max`.
    pub fn at_most(self, max: std::time::Duration) -> std::time::Duration {
        self.0.min(max)
    }
}

impl TryFrom<String> for Wait {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let number = match digits.len() {
            1..=6 => digits.parse::<u64>().ok(),
            _ => None,
        };
        let wait = match (number, &value[digits.len()..]) {
            (Some(n), "ms") => std::time::Duration::from_millis(n),
            (Some(n), "s") => std::time::Duration::from_secs(n),
            (Some(n), "m") => std::time::Duration::from_secs(n * 60),
            _ => {
                return Err(format!(
                    "invalid wait {value:?}: digits and a unit, ms, s or m (500ms, 30s, 1m)"
                ));
            }
        };
        Ok(Wait(wait))
    }
}

impl utoipa::PartialSchema for Wait {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(Self::PATTERN))
            .examples(["30s"])
            .into()
    }
}

impl utoipa::ToSchema for Wait {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Wait;

    #[test]
    fn a_wait_matching_the_pattern_is_read_and_capped() {
        let pattern = regex::Regex::new(Wait::PATTERN).unwrap();
        for (text, expected) in [
            ("30s", Duration::from_secs(30)),
            ("45s", Duration::from_secs(45)),
            ("250ms", Duration::from_millis(250)),
            ("1m", Duration::from_secs(60)),
            ("999999m", Duration::from_secs(60)),
        ] {
            assert!(pattern.is_match(text), "{text}");
            let wait = Wait::try_from(text.to_owned()).unwrap();
            assert_eq!(wait.at_most(Duration::from_secs(60)), expected, "{text}");
        }
        for text in ["", "s", "45", "1h", "-1s", "1000000s", "3.5s", " 1s", "1 s"] {
            assert!(!pattern.is_match(text), "{text}");
            assert!(Wait::try_from(text.to_owned()).is_err(), "{text}");
        }
    }
}
