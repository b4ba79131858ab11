//! `POST /v1/zitadel/events`: ZITADEL Actions v2 posts organization events here. Authenticated by
//! the target's signature, not a bearer token. Each (organization, sequence) is applied at most
//! once, and an event older than one already applied is ignored. The work itself is a durable
//! operation, so the answer is fast (ZITADEL does not retry; the periodic sync is the safety net).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tenancy_core::{ErrorCode, OrgId};
use tenancy_zitadel::webhook::{self, OrgEvent, SIGNATURE_HEADERS, WebhookError};
use tracing::info;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::zitadel::org_sync::{self as orgs, OrgChange, SyncReport};
use tenancy_core::Problem;

const TOLERANCE_SECS: u64 = 300;

/// Record an organization event, to be applied in the organization's order: added -> onboard,
/// changed -> rename, deactivated -> suspend, reactivated -> resume (when the deactivation
/// suspended it), removed -> delete. Answers at once; the work happens in the background and
/// in durable operations. An event at a sequence the organization already reached is ignored.
#[utoipa::path(post, path = "/v1/zitadel/events", tag = "zitadel", operation_id = "receive_zitadel_event", security(()),
    request_body(content = Object, content_type = "application/json", description = "The event as ZITADEL sends it"),
    params(("ZITADEL-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>")),
    responses((status = 200, description = "Recorded, or recorded before"), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let signature = SIGNATURE_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized)?;
    let now = chrono::Utc::now().timestamp();
    webhook::verify_signature(signature, &body, &state.webhook_keys, now, TOLERANCE_SECS).map_err(
        |e| {
            info!(error = %e, "ZITADEL event refused");
            ApiError::Unauthorized
        },
    )?;
    let invalid = |detail: String| ApiError::Refused {
        code: ErrorCode::InvalidEvent,
        detail,
    };
    let event = OrgEvent::parse(&body).map_err(|e: WebhookError| invalid(e.to_string()))?;
    let org_id: OrgId = event
        .org_id
        .parse()
        .map_err(|e: tenancy_core::IdError| invalid(e.to_string()))?;
    let change = match change(&event) {
        _ if state.ignored_orgs.contains(org_id.as_str()) => {
            info!(%org_id, "organization is never a tenant (ignored, or the platform's own)");
            None
        }
        // Organizations the registry creates itself (`create_org`) are onboarded by that request.
        Some(OrgChange::Added { name, .. })
            if state
                .identity
                .as_ref()
                .is_some_and(|identity| identity.org_id_for(&name) == org_id) =>
        {
            info!(%org_id, "organization created by the registry: onboarded by its request");
            None
        }
        other => other,
    };
    let change = change
        .map(|c| serde_json::to_value(c).map_err(|e| invalid(e.to_string())))
        .transpose()?;
    let recorded = state
        .engine
        .record_org_event(
            org_id.as_str(),
            event.sequence,
            &event.event_type,
            change.as_ref(),
        )
        .await?;
    if recorded && change.is_some() {
        state.org_events.notify_one();
    }
    info!(%org_id, event_type = %event.event_type, sequence = event.sequence, recorded, "ZITADEL event received");
    Ok(StatusCode::OK)
}

/// The tenant change an organization event asks for (names made usable as tenant names).
fn change(event: &OrgEvent) -> Option<OrgChange> {
    match event.event_type.as_str() {
        "org.added" => {
            let name = event
                .name()
                .and_then(orgs::tenant_name)
                .or_else(|| orgs::tenant_name(&event.org_id))?;
            Some(OrgChange::Added {
                name,
                place: Default::default(),
            })
        }
        "org.changed" => event
            .name()
            .and_then(orgs::tenant_name)
            .map(|name| OrgChange::Renamed { name }),
        "org.deactivated" => Some(OrgChange::Deactivated),
        "org.reactivated" => Some(OrgChange::Reactivated),
        "org.removed" => Some(OrgChange::Removed),
        _ => None,
    }
}

/// Compare ZITADEL's organizations with the tenants now and converge (onboard, rename, suspend,
/// resume, delete), as the periodic sync does. Platform admins only.
#[utoipa::path(post, path = "/v1/zitadel/sync", tag = "zitadel", operation_id = "sync_organizations",
    responses((status = 200, body = SyncReport), (status = 403, body = Problem),
              (status = 409, description = "Another replica is running the sync", body = Problem),
              (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn sync(
    State(state): State<AppState>,
    auth: Authenticated,
) -> ApiResult<axum::Json<SyncReport>> {
    auth.require_platform_admin()?;
    let identity = state.identity()?;
    Ok(axum::Json(orgs::sync(&state.engine, identity).await?))
}
