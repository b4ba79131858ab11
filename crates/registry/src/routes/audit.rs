//! `/v1/audit`: who did what to which tenant.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use tenancy_core::{OrgId, Problem};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub org_id: Option<OrgId>,
    /// Actions starting with this (`tenant.` or `tenant.suspend`); 1 to 200 characters, no control character.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub action: Option<String>,
    /// One actor's events (its subject); 1 to 200 characters, no control character.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub actor: Option<String>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventView {
    pub id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor_subject: String,
    pub actor_org: Option<String>,
    pub action: String,
    pub org_id: Option<String>,
    pub request_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEventView>,
    pub next_cursor: Option<i64>,
}

/// Audit events, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", operation_id = "list_audit_events", params(AuditParams), responses((status = 200, body = AuditPage),
        (status = 400, description = "`invalid_request`: a limit out of range, or an action or \
            actor filter of more than 200 characters or with a control character", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(params): Query<AuditParams>,
) -> ApiResult<axum::Json<AuditPage>> {
    auth.require_platform_admin()?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 500"));
    }
    let filter = tenancy_control::AuditFilter {
        org_id: params.org_id,
        action: super::filter_text("action", params.action.as_deref())?,
        actor: super::filter_text("actor", params.actor.as_deref())?,
        before_id: params.cursor,
        limit,
    };
    let events = state.engine.audit_events(&filter).await?;
    let next_cursor = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    let items = events
        .into_iter()
        .map(|e| AuditEventView {
            id: e.id,
            at: e.at,
            actor_subject: e.actor_subject,
            actor_org: e.actor_org,
            action: e.action,
            org_id: e.org_id,
            request_id: e.request_id,
            before: e.before,
            after: e.after,
        })
        .collect();
    Ok(axum::Json(AuditPage { items, next_cursor }))
}
