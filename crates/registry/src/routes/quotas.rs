//! Product quotas: `/v1/tenants/{org_id}/usage/{resource}` (count), `/quotas`, `/quotas/check`
//! and `/usage-log`. Product services count with the `tenant_router` role; a tenant's admins
//! read their own quotas and log.

use axum::extract::State;
use serde::Deserialize;
use tenancy_core::{
    OrgId, Problem, QuotaCheck, QuotaCheckRequest, QuotaName, QuotaStatus, UsageCounted,
    UsageIncrement, UsageLogPage,
};
use utoipa::IntoParams;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Count usage of a product quota, all or nothing.
///
/// Adds `amount` to the quota's current period if the sum stays within the tier's limit;
/// otherwise counts nothing and answers 429 `quota_exceeded` with the limit, the usage and when
/// the period resets. The same `idempotency_key` again counts nothing and answers 200 with
/// `replayed: true`. Monthly quotas reset on the 1st, 00:00 UTC.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/usage/{resource}", tag = "quotas",
    operation_id = "count_usage",
    params(("org_id" = OrgId, Path), ("resource" = QuotaName, Path)),
    request_body = UsageIncrement,
    responses(
        (status = 200, description = "Counted (or replayed)", body = UsageCounted),
        (status = 404, description = "`not_found`: no such tenant, or its tier has no such quota", body = Problem),
        (status = 409, description = "`invalid_state`: the tenant is deleted", body = Problem),
        (status = 429, description = "`quota_exceeded`: nothing was counted", body = Problem),
    ))]
pub async fn count(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org_id, resource)): Path<(OrgId, QuotaName)>,
    Json(increment): Json<UsageIncrement>,
) -> ApiResult<axum::Json<UsageCounted>> {
    auth.require_router()?;
    Ok(axum::Json(
        state
            .engine
            .count_usage(&org_id, &resource, &increment, &auth.actor())
            .await?,
    ))
}

/// Every quota of the tenant's tier: limit, used, remaining and when the period resets.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/quotas", tag = "quotas",
    operation_id = "list_quotas", params(("org_id" = OrgId, Path)),
    responses((status = 200, body = Vec<QuotaStatus>), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<axum::Json<Vec<QuotaStatus>>> {
    auth.require_quota_reader(&state.engine, &org_id).await?;
    Ok(axum::Json(state.engine.quotas(&org_id).await?))
}

/// Whether `amount` more would fit in a quota, counting nothing.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/quotas/check", tag = "quotas",
    operation_id = "check_quota", params(("org_id" = OrgId, Path)),
    request_body = QuotaCheckRequest,
    responses(
        (status = 200, body = QuotaCheck),
        (status = 404, description = "`not_found`: no such tenant, or its tier has no such quota", body = Problem),
    ))]
pub async fn check(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Json(request): Json<QuotaCheckRequest>,
) -> ApiResult<axum::Json<QuotaCheck>> {
    auth.require_quota_reader(&state.engine, &org_id).await?;
    Ok(axum::Json(
        state.engine.check_quota(&org_id, &request).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// Every counted increment, newest first.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/usage-log", tag = "quotas",
    operation_id = "list_usage_log", params(("org_id" = OrgId, Path), LogParams),
    responses((status = 200, body = UsageLogPage), (status = 404, body = Problem)))]
pub async fn log(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Query(params): Query<LogParams>,
) -> ApiResult<axum::Json<UsageLogPage>> {
    auth.require_quota_reader(&state.engine, &org_id).await?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 500"));
    }
    Ok(axum::Json(
        state
            .engine
            .usage_log(&org_id, params.cursor, limit)
            .await?,
    ))
}
