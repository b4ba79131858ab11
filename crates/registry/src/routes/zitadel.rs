//! `POST /v1/zitadel/events`: ZITADEL Actions v2 posts organization events here. Authenticated by
//! the target's signature, not a bearer token. Each (organization, sequence) is applied at most
//! once, and an event older than one already applied is ignored. The work itself is a durable
//! operation, so the answer is fast (ZITADEL does not retry; the periodic sync is the safety net).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tenancy_control::{Actor, ControlError};
use tenancy_core::{CreateTenant, OrgId, UpdateTenant};
use tenancy_zitadel::webhook::{self, OrgEvent, SIGNATURE_HEADERS, WebhookError};
use tracing::info;

use crate::error::{ApiError, ApiResult, Problem};
use crate::startup::AppState;

const TOLERANCE_SECS: i64 = 300;

/// Apply an organization event: added -> onboard, changed -> rename, deactivated -> suspend,
/// reactivated -> resume, removed -> delete.
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
    let event = OrgEvent::parse(&body).map_err(|e: WebhookError| ApiError::BadRequest {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_event",
        detail: e.to_string(),
    })?;
    let store = state.engine.store();
    if store.org_event_seen(&event.org_id, event.sequence).await? {
        info!(org_id = %event.org_id, sequence = event.sequence, "event already applied");
        return Ok(StatusCode::OK);
    }
    let org_id: OrgId = event.org_id.parse().map_err(ControlError::from)?;
    let actor = Actor {
        subject: "zitadel:event".into(),
        org_id: Some(event.org_id.clone()),
        request_id: None,
    };
    // An operation still under way (a resume right after a suspend) is waited for, briefly.
    let mut attempts = 0;
    let result = loop {
        let result = apply(&state, &event, &org_id, &actor).await;
        match result {
            Err(ControlError::Conflict {
                code: "operation_in_progress",
                ..
            }) if attempts < 3 => {
                attempts += 1;
                if let Some(open) = store.latest_operation(&org_id).await? {
                    state
                        .engine
                        .wait_operation(open.id, std::time::Duration::from_secs(10))
                        .await?;
                }
            }
            other => break other,
        }
    };
    match result {
        // Already in the state the event asks for (or on its way there): nothing to do.
        Ok(()) | Err(ControlError::Conflict { .. }) | Err(ControlError::TenantNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    store
        .record_org_event(&event.org_id, event.sequence, &event.event_type)
        .await?;
    info!(org_id = %event.org_id, event_type = %event.event_type, sequence = event.sequence, "ZITADEL event applied");
    Ok(StatusCode::OK)
}

async fn apply(
    state: &AppState,
    event: &OrgEvent,
    org_id: &OrgId,
    actor: &Actor,
) -> Result<(), ControlError> {
    let engine = &state.engine;
    match event.event_type.as_str() {
        "org.added" => {
            let name = event.name().unwrap_or(org_id.as_str()).parse()?;
            let request = CreateTenant {
                org_id: org_id.clone(),
                name,
                slug: None,
                region: None,
                tier: None,
                parent_org_id: None,
                admin_email: None,
            };
            engine.onboard(request, actor).await.map(drop)
        }
        "org.changed" => match event.name() {
            Some(name) => {
                let update = UpdateTenant {
                    name: Some(name.parse()?),
                    tier: None,
                };
                engine.update_tenant(org_id, &update, actor).await.map(drop)
            }
            None => Ok(()),
        },
        "org.deactivated" => engine.suspend(org_id, actor).await.map(drop),
        "org.reactivated" => engine.resume(org_id, actor).await.map(drop),
        "org.removed" => engine.delete(org_id, actor).await.map(drop),
        other => {
            info!(event_type = other, "event type ignored");
            Ok(())
        }
    }
}
