//! Per-tenant settings and features: `/v1/tenants/{org_id}/settings[/{key}]` and
//! `/v1/tenants/{org_id}/features`. A tenant's admins read and write its settings; router
//! services read them. Secret values are shown in plain text to platform admins and router
//! services only.

use axum::extract::State;
use axum::http::StatusCode;
use tenancy_control::{Authority, Secrets};
use tenancy_core::{EffectiveFeatures, OrgId, Problem, PutSetting, Setting, SettingKey};

use crate::auth::Authenticated;
use crate::error::ApiResult;
use crate::extract::{Json, Path};
use crate::state::AppState;

/// Platform admins and router services see secrets; tenant admins see that one is set.
fn secrets_for(auth: &Authenticated) -> Secrets {
    if auth.caller.can_route() {
        Secrets::Reveal
    } else {
        Secrets::Redact
    }
}

/// Platform admins change any setting; a tenant admin changes a feature only to turn off what
/// its tier grants, and never a feature override a platform admin made.
fn authority(auth: &Authenticated) -> Authority {
    if auth.caller.is_platform_admin() {
        Authority::Platform
    } else {
        Authority::Tenant
    }
}

/// Every setting of the tenant, by key.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/settings", tag = "settings",
    operation_id = "list_settings", params(("org_id" = OrgId, Path)),
    responses((status = 200, body = Vec<Setting>), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<axum::Json<Vec<Setting>>> {
    auth.require_tenant_or_router(&org_id)?;
    Ok(axum::Json(
        state.engine.settings(&org_id, secrets_for(&auth)).await?,
    ))
}

/// One setting.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/settings/{key}", tag = "settings",
    operation_id = "get_setting", params(("org_id" = OrgId, Path), ("key" = SettingKey, Path)),
    responses((status = 200, body = Setting), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org_id, key)): Path<(OrgId, SettingKey)>,
) -> ApiResult<axum::Json<Setting>> {
    auth.require_tenant_or_router(&org_id)?;
    Ok(axum::Json(
        state
            .engine
            .setting(&org_id, &key, secrets_for(&auth))
            .await?,
    ))
}

/// Set a setting.
///
/// The value must be of its `type` and at most 16 KiB; `features.<name>` keys are `bool`, and a
/// tenant admin may set one only to `false`, for a feature its tier grants, and not over a
/// platform admin's (403 otherwise). A `secret` is encrypted at rest and never answered to
/// tenant admins. Every change is an audit event (secrets redacted) and reaches routers through
/// the change feed.
#[utoipa::path(put, path = "/v1/tenants/{org_id}/settings/{key}", tag = "settings",
    operation_id = "put_setting", params(("org_id" = OrgId, Path), ("key" = SettingKey, Path)),
    request_body = PutSetting,
    responses(
        (status = 200, description = "Set; a secret's value is not repeated", body = Setting),
        (status = 403, description = "`forbidden`: a feature a tenant admin may not change", body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "`invalid_state`: the tenant is deleted; `settings_limit`: \
            the tenant would have more settings, or more bytes of them, than \
            `[settings] per_tenant` and `bytes_per_tenant` allow", body = Problem),
        (status = 429, description = "`rate_limited`: a tenant admin's writes past \
            `[settings] tenant_writes_per_minute`", body = Problem),
    ))]
pub async fn put(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org_id, key)): Path<(OrgId, SettingKey)>,
    Json(put): Json<PutSetting>,
) -> ApiResult<axum::Json<Setting>> {
    auth.require_tenant_admin(&org_id)?;
    Ok(axum::Json(
        state
            .engine
            .put_setting(&org_id, &key, put, authority(&auth), &auth.actor())
            .await?,
    ))
}

/// Remove a setting.
#[utoipa::path(delete, path = "/v1/tenants/{org_id}/settings/{key}", tag = "settings",
    operation_id = "delete_setting", params(("org_id" = OrgId, Path), ("key" = SettingKey, Path)),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`forbidden`: a platform admin's feature override, for a tenant admin", body = Problem),
        (status = 404, description = "`not_found`: no such tenant or setting", body = Problem),
        (status = 409, description = "`invalid_state`: the tenant is deleted", body = Problem),
        (status = 429, description = "`rate_limited`: a tenant admin's writes past \
            `[settings] tenant_writes_per_minute`", body = Problem),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org_id, key)): Path<(OrgId, SettingKey)>,
) -> ApiResult<StatusCode> {
    auth.require_tenant_admin(&org_id)?;
    state
        .engine
        .delete_setting(&org_id, &key, authority(&auth), &auth.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The tenant's features: its tier's defaults with its `features.<name>` settings over them.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/features", tag = "settings",
    operation_id = "get_features", params(("org_id" = OrgId, Path)),
    responses((status = 200, body = EffectiveFeatures), (status = 404, body = Problem)))]
pub async fn features(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<axum::Json<EffectiveFeatures>> {
    auth.require_tenant_or_router(&org_id)?;
    Ok(axum::Json(state.engine.features(&org_id).await?))
}
