//! `POST /v1/zitadel/events`: ZITADEL Actions v2 posts organization events here. Authenticated by
//! the target's signature, not a bearer token. Each (organization, sequence) is applied at most
//! once, and an event older than one already applied is ignored. The work itself is a durable
//! operation, so the answer is fast (ZITADEL does not retry; the periodic sync is the safety net).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tenancy_control::{Actor, ControlError};
use tenancy_core::{ErrorCode, OrgId};
use tenancy_zitadel::webhook::{self, OrgEvent, SIGNATURE_HEADERS, WebhookError};
use tracing::info;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::identity::org_id_for;
use crate::orgs::{self, OrgChange, SyncReport};
use crate::startup::AppState;
use tenancy_core::Problem;

const TOLERANCE_SECS: i64 = 300;

/// Apply an organization event: added -> onboard, changed -> rename, deactivated -> suspend,
/// reactivated -> resume (when the deactivation suspended it), removed -> delete.
#[utoipa::path(post, path = "/v1/zitadel/events", tag = "zitadel", security(()),
    request_body(content = Object, content_type = "application/json", description = "The event as ZITADEL sends it"),
    params(("ZITADEL-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>")),
    responses((status = 200, description = "Applied, or already applied"), (status = 401, body = Problem), (status = 422, body = Problem)))]
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
    let event = OrgEvent::parse(&body).map_err(|e: WebhookError| ApiError::Refused {
        code: ErrorCode::InvalidEvent,
        detail: e.to_string(),
    })?;
    if state
        .engine
        .org_event_seen(&event.org_id, event.sequence)
        .await?
    {
        info!(org_id = %event.org_id, sequence = event.sequence, "event already applied");
        return Ok(StatusCode::OK);
    }
    let org_id: OrgId = event.org_id.parse().map_err(ControlError::from)?;
    let ignored = state
        .identity
        .as_ref()
        .is_some_and(|identity| identity.is_ignored(org_id.as_str()));
    match change(&event) {
        _ if ignored => info!(%org_id, "organization is ignored (TENANCY_ZITADEL_IGNORE_ORGS)"),
        // Organizations the registry creates itself (`create_org`) are onboarded by that request.
        Some(OrgChange::Added { name }) if org_id_for(&name) == org_id => {
            info!(%org_id, "organization created by the registry: onboarded by its request")
        }
        Some(change) => {
            let actor = Actor {
                subject: "zitadel:event".into(),
                org_id: Some(event.org_id.clone()),
                request_id: None,
            };
            orgs::apply(&state.engine, &org_id, &change, &actor).await?;
        }
        None => info!(event_type = %event.event_type, "event type ignored"),
    }
    state
        .engine
        .record_org_event(&event.org_id, event.sequence, &event.event_type)
        .await?;
    info!(org_id = %event.org_id, event_type = %event.event_type, sequence = event.sequence, "ZITADEL event applied");
    Ok(StatusCode::OK)
}

/// The tenant change an organization event asks for.
fn change(event: &OrgEvent) -> Option<OrgChange> {
    let name = || event.name().unwrap_or(&event.org_id).to_owned();
    match event.event_type.as_str() {
        "org.added" => Some(OrgChange::Added { name: name() }),
        "org.changed" => event
            .name()
            .map(|n| OrgChange::Renamed { name: n.to_owned() }),
        "org.deactivated" => Some(OrgChange::Deactivated),
        "org.reactivated" => Some(OrgChange::Reactivated),
        "org.removed" => Some(OrgChange::Removed),
        _ => None,
    }
}

/// Compare ZITADEL's organizations with the tenants now and converge (onboard, rename, suspend,
/// resume, delete), as the periodic sync does. Platform admins only.
#[utoipa::path(post, path = "/v1/zitadel/sync", tag = "zitadel",
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
