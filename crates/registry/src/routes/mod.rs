//! Every route, registered in one place. The OpenAPI document is built from the same
//! registrations, so it lists exactly the routes that exist.

use axum::Router;
use axum::http::{HeaderName, Request};
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use self::openapi::ApiDoc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::serve::{Shedding, shed};
use crate::settings::Settings;
use crate::state::AppState;

pub mod audit;
pub mod backups;
pub mod changes;
pub mod openapi;
pub mod operations;
pub mod quotas;
pub mod servers;
pub mod settings;
pub mod system;
pub mod tenants;
pub mod zitadel;

/// The whole service: the API, the probes and documents, and the layers every request goes
/// through (load shedding, metrics, the body limit, request ids, tracing).
pub fn router(api: Router<AppState>, state: AppState, settings: &Settings) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    api.merge(system())
        .fallback(|uri: axum::http::Uri| async move { ApiError::NoRoute(uri.path().to_owned()) })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiError::MethodNotAllowed {
                    method: method.to_string(),
                    path: uri.path().to_owned(),
                }
            },
        )
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Shedding::new(&settings.limits()),
            shed,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::track))
        // Enforced by the body extractors, so an oversized body is answered as problem+json
        // that states the limit.
        .layer(axum::extract::DefaultBodyLimit::max(settings.max_body))
        .layer(axum::Extension(BodyLimit(settings.max_body)))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", method = %request.method(),
                    path = %request.uri().path(), request_id = %id,
                    subject = tracing::field::Empty)
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(axum::middleware::map_request(correlation_id_only))
}

/// A caller's `x-request-id` is kept only as a correlation id of a sane shape (at most 64
/// letters, digits, `-`, `_`, `.` or `:`); any other is replaced by one of ours, so that nothing
/// a caller sends is copied into logs and audit events as it came.
async fn correlation_id_only(mut request: Request<axum::body::Body>) -> Request<axum::body::Body> {
    let sane = |v: &axum::http::HeaderValue| {
        let bytes = v.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 64
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    };
    let headers = request.headers_mut();
    let all: Vec<_> = headers.get_all("x-request-id").iter().cloned().collect();
    if all.len() > 1 || all.first().is_some_and(|v| !sane(v)) {
        headers.remove("x-request-id");
    }
    request
}

/// A text filter of 1 to 200 characters, none a control character, by its parameter's name
/// (the API's and the console's rule).
pub fn filter_text(name: &str, text: Option<&str>) -> crate::error::ApiResult<Option<String>> {
    match text {
        None => Ok(None),
        Some(text)
            if (1..=200).contains(&text.chars().count()) && !text.chars().any(char::is_control) =>
        {
            Ok(Some(text.to_owned()))
        }
        Some(_) => Err(crate::error::ApiError::invalid(format!(
            "{name} must be 1 to 200 characters, none a control character"
        ))),
    }
}

/// The API routes and their OpenAPI document.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create, tenants::list))
        .routes(routes!(tenants::get, tenants::update, tenants::delete))
        .routes(routes!(tenants::suspend))
        .routes(routes!(tenants::resume))
        .routes(routes!(tenants::retry))
        .routes(routes!(tenants::purge))
        .routes(routes!(tenants::rotate_credentials))
        .routes(routes!(tenants::operations))
        .routes(routes!(tenants::clients))
        .routes(routes!(tenants::move_to_agency))
        .routes(routes!(tenants::move_tenant))
        .routes(routes!(tenants::cancel_move))
        .routes(routes!(tenants::moves))
        .routes(routes!(backups::create, backups::list))
        .routes(routes!(backups::get))
        .routes(routes!(backups::download))
        .routes(routes!(backups::restore))
        .routes(routes!(backups::restore_window))
        .routes(routes!(tenants::connection))
        .routes(routes!(tenants::usage))
        .routes(routes!(tenants::health))
        .routes(routes!(quotas::count))
        .routes(routes!(quotas::list))
        .routes(routes!(quotas::check))
        .routes(routes!(quotas::log))
        .routes(routes!(settings::list))
        .routes(routes!(settings::get, settings::put, settings::delete))
        .routes(routes!(settings::features))
        .routes(routes!(operations::get))
        .routes(routes!(changes::list))
        .routes(routes!(servers::list, servers::add))
        .routes(routes!(servers::delete))
        .routes(routes!(servers::drain))
        .routes(routes!(servers::activate))
        .routes(routes!(audit::list))
        .routes(routes!(zitadel::events))
        .routes(routes!(zitadel::sync))
        .split_for_parts()
}

/// Probes and documents, outside the versioned API.
pub fn system() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(crate::metrics::render))
        .route("/openapi.json", get(system::openapi))
}
