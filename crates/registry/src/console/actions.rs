//! The console's actions (suspend, resume, retry, rotate credentials, delete, re-tier, move,
//! cancel a move, back up, restore), and a server's (drain, activate):
//! each a POST with the same engine call, authorization and audit event as the API, the
//! signed-in person as the actor. Disruptive ones need the organization
//! id typed into `confirm`. The answer sends the browser back to the tenant's page, which
//! follows the operation until it ends.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tenancy_control::Cascade;
use tenancy_core::OrgId;

use super::session::SignedIn;
use super::view;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Confirm {
    #[serde(default)]
    confirm: String,
    /// A re-tier's new tier.
    #[serde(default)]
    tier: String,
    /// A move's target server (empty: placement chooses).
    #[serde(default)]
    server: String,
    /// A restore's backup (one of the tenant's completed backups).
    #[serde(default)]
    backup: String,
    /// A point-in-time restore's moment (RFC 3339); takes precedence over `backup`.
    #[serde(default)]
    at: String,
}

/// Actions that disrupt the tenant: its organization id must be typed to confirm them.
pub const DISRUPTIVE: [&str; 5] = ["suspend", "delete", "rotate-credentials", "move", "restore"];

/// `POST /console/tenants/{org_id}/{action}`.
pub async fn tenant_action(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path((org_id, action)): Path<(String, String)>,
    Form(form): Form<Confirm>,
) -> Response {
    let Ok(org_id) = org_id.parse::<OrgId>() else {
        return view::refusal(404, "There is no such tenant.");
    };
    if DISRUPTIVE.contains(&action.as_str()) && form.confirm.trim() != org_id.as_str() {
        return view::refusal(
            400,
            "Type the tenant's organization id into the confirmation field to do this.",
        );
    }
    match act(&state, &signed_in, &org_id, &action, &form).await {
        Ok(()) => Redirect::to(&format!("/console/tenants/{org_id}")).into_response(),
        Err(e) => view::error(e),
    }
}

async fn act(
    state: &AppState,
    signed_in: &SignedIn,
    org_id: &OrgId,
    action: &str,
    form: &Confirm,
) -> Result<(), ApiError> {
    let auth = &signed_in.auth;
    let engine = &state.engine;
    let actor = auth.actor();
    match action {
        "suspend" => {
            let by = auth
                .require_platform_or_agency_admin(engine, org_id)
                .await?;
            engine.suspend(org_id, by, &actor).await?;
        }
        "resume" => {
            let by = auth
                .require_platform_or_agency_admin(engine, org_id)
                .await?;
            engine.resume(org_id, by, &actor).await?;
        }
        "retry" => {
            auth.require_platform_admin()?;
            engine.retry(org_id, &actor).await?;
        }
        "rotate-credentials" => {
            auth.require_platform_admin()?;
            engine.rotate_credentials(org_id, &actor).await?;
        }
        "delete" => {
            auth.require_platform_admin()?;
            engine.delete(org_id, Cascade::Refuse, &actor).await?;
        }
        "retier" => {
            auth.require_platform_admin()?;
            let tier = form
                .tier
                .parse()
                .map_err(|_| ApiError::invalid(format!("{:?} is not a tier", form.tier)))?;
            let update = tenancy_core::UpdateTenant {
                name: None,
                tier: Some(tier),
            };
            engine.update_tenant(org_id, &update, &actor).await?;
        }
        "move" => {
            auth.require_platform_admin()?;
            let server_id = match form.server.trim() {
                "" => None,
                text => Some(
                    text.parse()
                        .map_err(|_| ApiError::invalid(format!("{text:?} is not a server id")))?,
                ),
            };
            let request = tenancy_core::MoveTenant {
                server_id,
                mode: None,
            };
            engine.move_tenant(org_id, &request, &actor).await?;
        }
        "cancel-move" => {
            auth.require_platform_admin()?;
            engine.cancel_move(org_id, &actor).await?;
        }
        "restore" => {
            auth.require_tenant_admin(org_id)?;
            let source = match (form.at.trim(), form.backup.trim()) {
                ("", "") => {
                    return Err(ApiError::invalid(
                        "choose a backup, or give a moment to restore to",
                    ));
                }
                ("", backup) => tenancy_core::RestoreSource::Backup(
                    backup
                        .parse()
                        .map_err(|_| ApiError::invalid(format!("{backup:?} is not a backup id")))?,
                ),
                (at, _) => tenancy_core::RestoreSource::Moment(
                    chrono::DateTime::parse_from_rfc3339(at)
                        .map_err(|_| {
                            ApiError::invalid(format!(
                                "{at:?} is not a moment: write it as 2026-12-07T16:10:00Z"
                            ))
                        })?
                        .into(),
                ),
            };
            engine.request_restore(org_id, source, &actor).await?;
        }
        "backup" => {
            auth.require_tenant_admin(org_id)?;
            engine
                .request_backup(org_id, tenancy_core::BackupKind::Manual, &actor)
                .await?;
        }
        other => {
            return Err(ApiError::NoRoute(format!(
                "/console/tenants/{org_id}/{other}"
            )));
        }
    }
    Ok(())
}

/// `POST /console/servers/{id}/{action}`: drain (its id typed to confirm) or activate a server
/// (platform admins), as `POST /v1/servers/{id}/drain` and `/activate`.
pub async fn server_action(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<Confirm>,
) -> Response {
    let Ok(id) = id.parse::<tenancy_core::ServerId>() else {
        return view::refusal(404, "There is no such server.");
    };
    let to = match action.as_str() {
        "drain" => tenancy_core::ServerState::Draining,
        "activate" => tenancy_core::ServerState::Active,
        other => {
            return view::error(ApiError::NoRoute(format!("/console/servers/{id}/{other}")));
        }
    };
    if to == tenancy_core::ServerState::Draining && form.confirm.trim() != id.as_str() {
        return view::refusal(
            400,
            "Type the server's id into the confirmation field to drain it.",
        );
    }
    let auth = &signed_in.auth;
    let done = async {
        auth.require_platform_admin()?;
        state
            .engine
            .set_server_state(&id, to, &auth.actor())
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match done {
        Ok(()) => Redirect::to("/console/servers").into_response(),
        Err(e) => view::error(e),
    }
}
