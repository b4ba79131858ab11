//! Every route, registered in one place. The OpenAPI document is built from the same
//! registrations, so it lists exactly the routes that exist.

use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use self::openapi::ApiDoc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::startup::AppState;

pub mod audit;
pub mod changes;
pub mod openapi;
pub mod operations;
pub mod quotas;
pub mod servers;
pub mod settings;
pub mod system;
pub mod tenants;
pub mod zitadel;

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
        .routes(routes!(tenants::moves))
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
