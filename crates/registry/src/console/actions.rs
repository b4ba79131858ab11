//! The console's actions (suspend, resume, retry, rotate credentials, delete, re-tier, back up):
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
}

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
    let disruptive = matches!(action.as_str(), "suspend" | "delete" | "rotate-credentials");
    if disruptive && form.confirm.trim() != org_id.as_str() {
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
