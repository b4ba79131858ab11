//! Probes and documents: `/healthz`, `/readyz`, `/openapi.json`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::startup::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the registry database answers and its migrations are applied.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let check: Result<Option<i32>, sqlx::Error> =
        sqlx::query_scalar("SELECT max(version) FROM refinery_schema_history")
            .fetch_one(state.engine.store().pool())
            .await;
    match check {
        Ok(Some(version)) if version >= tenancy_control::migrate::latest_registry_version() => {
            "ready".into_response()
        }
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "registry migrations not applied",
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "registry database unreachable",
        )
            .into_response(),
    }
}

pub async fn openapi(State(state): State<AppState>) -> Response {
    axum::Json(state.openapi.as_ref().clone()).into_response()
}
