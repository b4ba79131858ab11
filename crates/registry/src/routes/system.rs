//! Probes and documents: `/healthz`, `/readyz`, `/openapi.json`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the registry database answers and its migrations are applied.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.engine.ready().await {
        Ok(true) => "ready".into_response(),
        Ok(false) => (
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
    axum::Json(state.openapi.as_ref()).into_response()
}
