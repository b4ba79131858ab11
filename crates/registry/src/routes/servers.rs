//! `/v1/servers`: the database servers tenants are placed on.

use axum::extract::State;
use axum::http::StatusCode;
use tenancy_core::{AddServer, Server, ServerId, ServerState};

use crate::auth::Authenticated;
use crate::error::ApiResult;
use crate::extract::{Json, Path};
use crate::state::AppState;
use tenancy_core::Problem;

/// Every server with its state, capacity, tenant count and template version.
#[utoipa::path(get, path = "/v1/servers", tag = "servers", operation_id = "list_servers", responses((status = 200, body = Vec<Server>)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<axum::Json<Vec<Server>>> {
    auth.require_platform_admin()?;
    Ok(axum::Json(state.engine.servers().await?))
}

/// Register a server and prepare its template. Its admin password must be in the environment
/// variable `password_env` of every registry process.
#[utoipa::path(post, path = "/v1/servers", tag = "servers", operation_id = "add_server", request_body = AddServer,
    responses((status = 201, body = Server),
        (status = 409, description = "`server_exists`, `password_env_unset`, or `server_refused`: \
            a password variable that is not the server's own (`TENANCY_SERVER_PASSWORD_` and its \
            id) or is another server's, or a remote host without verified TLS", body = Problem),
        (status = 422, body = Problem),
        (status = 503, description = "`server_unavailable`: the server is registered, disabled, \
            but cannot be reached to prepare its template; activate it once it can", body = Problem)))]
pub async fn add(
    State(state): State<AppState>,
    auth: Authenticated,
    Json(request): Json<AddServer>,
) -> ApiResult<(StatusCode, axum::Json<Server>)> {
    auth.require_platform_admin()?;
    Ok((
        StatusCode::CREATED,
        axum::Json(state.engine.add_server(&request, &auth.actor()).await?),
    ))
}

/// Delete a server registered through the API that was never prepared (one that could not be
/// reached, say). A prepared server is refused: drain it instead; a configured one is the
/// configuration file's.
#[utoipa::path(delete, path = "/v1/servers/{id}", tag = "servers", operation_id = "delete_server", params(("id" = ServerId, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem),
        (status = 409, description = "`invalid_state`: the server was prepared; `server_refused`: \
            it is in the configuration file", body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<ServerId>,
) -> ApiResult<StatusCode> {
    auth.require_platform_admin()?;
    state.engine.delete_server(&id, &auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop placing new tenants on a server; its tenants stay.
#[utoipa::path(post, path = "/v1/servers/{id}/drain", tag = "servers", operation_id = "drain_server", params(("id" = ServerId, Path)),
    responses((status = 200, body = Server), (status = 404, body = Problem)))]
pub async fn drain(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<ServerId>,
) -> ApiResult<axum::Json<Server>> {
    set_state(state, auth, id, ServerState::Draining).await
}

/// Take new tenants on a server again.
#[utoipa::path(post, path = "/v1/servers/{id}/activate", tag = "servers", operation_id = "activate_server", params(("id" = ServerId, Path)),
    responses((status = 200, body = Server), (status = 404, body = Problem),
        (status = 503, description = "`server_unavailable`: a server never prepared cannot be \
            reached to prepare its template; it stays disabled", body = Problem)))]
pub async fn activate(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<ServerId>,
) -> ApiResult<axum::Json<Server>> {
    set_state(state, auth, id, ServerState::Active).await
}

async fn set_state(
    state: AppState,
    auth: Authenticated,
    id: ServerId,
    to: ServerState,
) -> ApiResult<axum::Json<Server>> {
    auth.require_platform_admin()?;
    state
        .engine
        .set_server_state(&id, to, &auth.actor())
        .await?;
    Ok(axum::Json(state.engine.server(&id).await?))
}
