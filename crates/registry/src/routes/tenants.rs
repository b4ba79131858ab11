//! `/v1/tenants`: onboarding and the tenant lifecycle.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tenancy_control::{Cascade, Onboarded, TenantFilter};
use tenancy_core::{
    ConnectionInfo, CreateOrg, CreateTenant, MoveTenant, Operation, OperationState, OrgId, Region,
    ServerId, Tenant, TenantHealth, TenantKind, TenantMove, TenantSelector, TenantStatus,
    TenantUsage, Tier, UpdateTenant,
};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query, Wait};
use crate::state::AppState;
use tenancy_core::Problem;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateParams {
    /// Block until the tenant is active, up to this long (`30s`, `1m`; longer waits are cut to
    /// the registry's maximum, 60 s unless configured otherwise); the provisioning then runs at
    /// once in the process that took the request, when it has a run slot free. Without it the
    /// answer is 202 with the provisioning operation.
    #[param(inline)]
    pub wait: Option<Wait>,
}

/// Onboard an organization: clone the template into its own database.
///
/// Idempotent per `org_id`: the same request again answers 200 with the tenant; a different
/// request for an existing organization is 409 `tenant_exists`. Without `org_id`, `create_org`
/// creates the organization in ZITADEL first (idempotent per organization name; a name held by
/// an organization the registry did not create is 409 `organization_exists`). With
/// `admin_email`, the first admin is invited and granted `tenant_admin` once the database is
/// ready (an `activate_admin` operation).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", operation_id = "create_tenant",
    params(CreateParams), request_body = CreateTenant,
    responses(
        (status = 201, description = "Active within the wait", body = Tenant),
        (status = 202, description = "Accepted; provisioning runs", body = Operation),
        (status = 200, description = "The same request was already made", body = Tenant),
        (status = 409, description = "`tenant_exists`, `slug_taken`, `organization_exists`, \
            `unknown_region`, `unknown_parent`, `invalid_parent` (not an agency, or not active), \
            `zitadel_not_configured`", body = Problem),
        (status = 502, description = "ZITADEL refused to create the organization", body = Problem),
        (status = 503, description = "ZITADEL or the registry database is unavailable; no \
            server in the region has free capacity", body = Problem),
    ))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(params): Query<CreateParams>,
    Json(mut request): Json<CreateTenant>,
) -> ApiResult<Response> {
    auth.require_platform_admin()?;
    let wait = params
        .wait
        .map_or(Duration::ZERO, |w| w.at_most(state.max_wait));
    if let Some(create_org) = request.create_org.take() {
        request.org_id = Some(create_organization(&state, &mut request, create_org).await?);
    }
    match state
        .engine
        .onboard_and_wait(request, &auth.actor(), wait)
        .await?
    {
        Onboarded::Existing { tenant } => Ok((StatusCode::OK, axum::Json(tenant)).into_response()),
        Onboarded::Created { tenant, operation }
            if operation.state == OperationState::Succeeded =>
        {
            Ok((StatusCode::CREATED, axum::Json(tenant)).into_response())
        }
        Onboarded::Created { operation, .. } => Ok(accepted(operation)),
    }
}

/// Creates the organization of a `create_org` request in ZITADEL, after checking what can be
/// checked, so a request that cannot be onboarded leaves no organization behind.
async fn create_organization(
    state: &AppState,
    request: &mut CreateTenant,
    create_org: CreateOrg,
) -> ApiResult<OrgId> {
    // Both refusals are in the request schema too (`oneOf`, `not`).
    if request.org_id.is_some() {
        return Err(ApiError::unprocessable(
            "give org_id or create_org, not both",
        ));
    }
    if let Some(admin) = &create_org.admin {
        if request.admin_email.is_some() {
            return Err(ApiError::unprocessable(
                "give the first admin once: admin_email or create_org.admin",
            ));
        }
        request.admin_email = Some(admin.email.clone());
    }
    let identity = state.identity()?;
    state.engine.check_onboarding(request)?;
    let name = create_org.name.as_ref().unwrap_or(&request.name);
    let place = crate::zitadel::Placement {
        kind: request.kind,
        parent_org_id: request.parent_org_id.clone(),
    };
    Ok(identity
        .create_org(name, create_org.admin.as_ref(), &place)
        .await?)
}

/// 202 with the operation and where to follow it.
pub fn accepted(op: Operation) -> Response {
    let location = format!("/v1/operations/{}", op.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(op),
    )
        .into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub status: Option<TenantStatus>,
    pub region: Option<Region>,
    pub tier: Option<Tier>,
    pub server_id: Option<ServerId>,
    pub kind: Option<TenantKind>,
    /// An agency's clients.
    pub parent_org_id: Option<OrgId>,
    /// Tenants whose organization id or database name is this text, or whose name contains
    /// it (ignoring case); 1 to 200 characters, no control character.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$"
    )]
    pub search: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: tenants after this `org_id`.
    pub cursor: Option<OrgId>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantPage {
    pub items: Vec<Tenant>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<OrgId>,
}

/// List tenants, filtered, in pages ordered by `org_id`.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", operation_id = "list_tenants",
    params(ListParams), responses((status = 200, body = TenantPage),
        (status = 400, description = "`invalid_request`: a filter that is not a valid one, an \
            unknown tier, a limit out of range, or a search text of more than 200 characters or with a control character",
            body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<TenantPage>> {
    auth.require_platform_admin()?;
    let limit = page_size(params.limit)?;
    if let Some(tier) = &params.tier
        && !state.engine.config().tiers.contains_key(tier)
    {
        return Err(ApiError::invalid(format!(
            "unknown tier {tier}; the tiers are: {}",
            state.engine.config().tier_names()
        )));
    }
    let filter = TenantFilter {
        selector: TenantSelector {
            statuses: params.status.into_iter().collect(),
            region: params.region,
            tier: params.tier,
            server_id: params.server_id,
            kind: params.kind,
            parent_org_id: params.parent_org_id,
            org_ids: Vec::new(),
        },
        search: super::filter_text("search", params.search.as_deref())?,
        after: params.cursor,
        limit,
    };
    Ok(axum::Json(page(&state, filter).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ClientParams {
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: clients after this `org_id`.
    pub cursor: Option<OrgId>,
}

/// An agency's clients, in pages ordered by `org_id`. Platform admins, the agency's own
/// admins, and router services (which build agency views and tenant contexts).
#[utoipa::path(get, path = "/v1/tenants/{org_id}/clients", tag = "tenants", operation_id = "list_clients",
    params(("org_id" = OrgId, Path), ClientParams),
    responses((status = 200, body = TenantPage), (status = 404, body = Problem)))]
pub async fn clients(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Query(params): Query<ClientParams>,
) -> ApiResult<axum::Json<TenantPage>> {
    if !auth.caller.can_route() {
        auth.require_tenant_read(&org_id)?;
    }
    state.engine.tenant(&org_id).await?;
    let filter = TenantFilter {
        selector: TenantSelector::clients_of(&org_id),
        search: None,
        after: params.cursor,
        limit: page_size(params.limit)?,
    };
    let mut page = page(&state, filter).await?;
    page.items = page.items.into_iter().map(|t| auth.tenant(t)).collect();
    Ok(axum::Json(page))
}

fn page_size(limit: Option<i64>) -> ApiResult<i64> {
    let limit = limit.unwrap_or(100);
    if (1..=500).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::invalid("limit must be between 1 and 500"))
    }
}

/// One page of `filter` (whose `limit` is the page size) and the cursor of the next.
async fn page(state: &AppState, mut filter: TenantFilter) -> ApiResult<TenantPage> {
    let limit = filter.limit;
    filter.limit = limit + 1;
    let mut items = state.engine.list_tenants(&filter).await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|t| t.org_id.clone())
    } else {
        None
    };
    Ok(TenantPage { items, next_cursor })
}

/// One tenant. Tenant admins may read their own organization's.
#[utoipa::path(get, path = "/v1/tenants/{org_id}", tag = "tenants", operation_id = "get_tenant", params(("org_id" = OrgId, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<axum::Json<Tenant>> {
    auth.require_tenant_or_agency(&state.engine, &org_id)
        .await?;
    Ok(axum::Json(auth.tenant(state.engine.tenant(&org_id).await?)))
}

/// Rename and/or re-tier. A tier change takes effect in the registry at once and applies the new
/// limits on the server through a `retier` operation, which the answer's `Location` names.
#[utoipa::path(patch, path = "/v1/tenants/{org_id}", tag = "tenants", operation_id = "update_tenant", params(("org_id" = OrgId, Path)),
    request_body = UpdateTenant, responses((status = 200, body = Tenant, headers(("Location" = String,
        description = "With a tier change: the `retier` operation applying it (`/v1/operations/{id}`)"))),
        (status = 409, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Json(update): Json<UpdateTenant>,
) -> ApiResult<Response> {
    auth.require_platform_admin()?;
    if update.name.is_none() && update.tier.is_none() {
        // Nothing asked, nothing changed.
        return Ok(axum::Json(state.engine.tenant(&org_id).await?).into_response());
    }
    let (tenant, operation) = state
        .engine
        .update_tenant(&org_id, &update, &auth.actor())
        .await?;
    let location = operation.map(|op| format!("/v1/operations/{}", op.id));
    Ok((
        location.map(|l| [(header::LOCATION, l)]),
        axum::Json(tenant),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// For an agency: delete its live clients with it, each by an operation of its own (listed
    /// in the agency's operations) with the same retention. Without it, an agency with live
    /// clients is 409 `has_clients`.
    #[serde(default)]
    pub cascade: bool,
}

/// Soft delete: refused at once, database kept for the retention period, then dropped. A move
/// under way that has not switched is preempted (abandoned first; the answer is then the move's
/// operation).
#[utoipa::path(delete, path = "/v1/tenants/{org_id}", tag = "tenants", operation_id = "delete_tenant",
    params(("org_id" = OrgId, Path), DeleteParams),
    responses((status = 202, body = Operation), (status = 404, body = Problem),
        (status = 409, description = "`invalid_state`, `operation_in_progress`, `has_clients` (an \
            agency with clients that are not deleted, without `cascade=true`)", body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Query(params): Query<DeleteParams>,
) -> ApiResult<Response> {
    auth.require_platform_admin()?;
    let cascade = if params.cascade {
        Cascade::WithClients
    } else {
        Cascade::Refuse
    };
    Ok(accepted(
        state.engine.delete(&org_id, cascade, &auth.actor()).await?,
    ))
}

/// Suspend: the tenant's role can no longer log in and its sessions end. Platform admins, and a
/// client's agency's admins; who suspended is recorded (`suspended_by`) and decides who may
/// resume. A move under way that has not switched is preempted: the tenant is suspended at
/// once, the move abandoned, then the suspension runs (the answer is then the move's
/// operation).
#[utoipa::path(post, path = "/v1/tenants/{org_id}/suspend", tag = "tenants", operation_id = "suspend_tenant", params(("org_id" = OrgId, Path)),
    responses((status = 202, body = Operation), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`invalid_state` (not active), `operation_in_progress`", body = Problem)))]
pub async fn suspend(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<Response> {
    let by = auth
        .require_platform_or_agency_admin(&state.engine, &org_id)
        .await?;
    Ok(accepted(
        state.engine.suspend(&org_id, by, &auth.actor()).await?,
    ))
}

/// Resume a suspended tenant. A platform admin lifts any suspension; a client's agency's admins
/// only the agency's own (`suspended_by: agency`), and nothing while the agency is not active.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/resume", tag = "tenants", operation_id = "resume_tenant", params(("org_id" = OrgId, Path)),
    responses((status = 202, body = Operation), (status = 403, description = "`forbidden`: not the caller's \
            suspension to lift", body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`invalid_state` (not suspended, or the agency is not active), \
            `operation_in_progress`", body = Problem)))]
pub async fn resume(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<Response> {
    let by = auth
        .require_platform_or_agency_admin(&state.engine, &org_id)
        .await?;
    Ok(accepted(
        state.engine.resume(&org_id, by, &auth.actor()).await?,
    ))
}

/// Run the tenant's last failed operation again; for a tenant the reconciler failed (its
/// database was missing), a `converge` that makes it active again if its database is back.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/retry", tag = "tenants", operation_id = "retry_tenant", params(("org_id" = OrgId, Path)),
    responses((status = 202, body = Operation), (status = 404, body = Problem),
        (status = 409, description = "`nothing_to_retry`", body = Problem)))]
pub async fn retry(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<Response> {
    auth.require_platform_admin()?;
    Ok(accepted(state.engine.retry(&org_id, &auth.actor()).await?))
}

/// Give the tenant's role a new password (the next generation, under the current master key).
/// Routers pick it up through the change feed.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/rotate-credentials", tag = "tenants", operation_id = "rotate_credentials", params(("org_id" = OrgId, Path)),
    responses((status = 202, body = Operation), (status = 409, body = Problem)))]
pub async fn rotate_credentials(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<Response> {
    auth.require_platform_admin()?;
    Ok(accepted(
        state
            .engine
            .rotate_credentials(&org_id, &auth.actor())
            .await?,
    ))
}

/// Drop a deleted tenant's database and role now, without waiting for the retention period.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/purge", tag = "tenants", operation_id = "purge_tenant", params(("org_id" = OrgId, Path)),
    responses((status = 202, body = Operation), (status = 409, body = Problem)))]
pub async fn purge(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<Response> {
    auth.require_platform_admin()?;
    Ok(accepted(state.engine.purge(&org_id, &auth.actor()).await?))
}

/// The tenant's operations, newest first; an agency's include those its cascades queued for its
/// clients (they name the agency's operation in `parent_operation_id`).
#[utoipa::path(get, path = "/v1/tenants/{org_id}/operations", tag = "tenants", operation_id = "list_tenant_operations", params(("org_id" = OrgId, Path)),
    responses((status = 200, body = Vec<Operation>)))]
pub async fn operations(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<axum::Json<Vec<Operation>>> {
    auth.require_tenant_or_agency(&state.engine, &org_id)
        .await?;
    state.engine.tenant(&org_id).await?;
    let ops = state.engine.operations_with_cascades(&org_id, 100).await?;
    Ok(axum::Json(
        ops.into_iter().map(|op| auth.operation(op)).collect(),
    ))
}

/// Where a router connects for this tenant: router services only (role `tenant_router`; not
/// platform admins, whose people have `tenantctl psql`). The password is given only while the
/// tenant is active.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/connection", tag = "routing", operation_id = "get_connection", params(("org_id" = OrgId, Path)),
    responses((status = 200, body = ConnectionInfo), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "`not_placed`: the tenant has no database yet", body = Problem)))]
pub async fn connection(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<axum::Json<ConnectionInfo>> {
    auth.require_router_service()?;
    Ok(axum::Json(state.engine.connection_info(&org_id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// History from this moment (RFC 3339, `2026-11-01T00:00:00Z`); the last 24 hours by default.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Database size and open sessions now, the storage quota and how much of it is used, whether
/// the tenant is read-only for being over it, and the usage sampler's history.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/usage", tag = "tenants", operation_id = "get_usage",
    params(("org_id" = OrgId, Path), UsageParams),
    responses((status = 200, body = TenantUsage), (status = 404, body = Problem),
        (status = 409, description = "`not_placed`: the tenant has no database yet", body = Problem)))]
pub async fn usage(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Query(params): Query<UsageParams>,
) -> ApiResult<axum::Json<TenantUsage>> {
    auth.require_tenant_or_agency(&state.engine, &org_id)
        .await?;
    Ok(axum::Json(state.engine.usage(&org_id, params.since).await?))
}

/// Whether the tenant's server answers, its database exists, and its schema is current.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/health", tag = "tenants", operation_id = "get_health", params(("org_id" = OrgId, Path)),
    responses((status = 200, body = TenantHealth), (status = 404, body = Problem)))]
pub async fn health(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<axum::Json<TenantHealth>> {
    auth.require_tenant_or_agency(&state.engine, &org_id)
        .await?;
    Ok(axum::Json(auth.health(state.engine.health(&org_id).await?)))
}

/// `POST /v1/tenants/{org_id}/move-to-agency`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveToAgency {
    /// The client's new agency: an agency tenant, active or provisioning.
    pub parent_org_id: OrgId,
}

/// Move the tenant's database to another server: online (logical replication, then a cutover
/// of well under two seconds) when the source server has `wal_level = logical`, else offline
/// (blocked while it is dumped and restored). Routers follow the switch through the change feed.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/move", tag = "tenants", operation_id = "move_tenant",
    params(("org_id" = OrgId, Path)), request_body = MoveTenant,
    responses(
        (status = 202, description = "Move queued", body = Operation),
        (status = 404, description = "`not_found`: no such tenant, or no such server", body = Problem),
        (status = 409, description = "`invalid_state` (not active or suspended), \
            `operation_in_progress`, `not_placed`, `invalid_target` (the tenant's own server, \
            draining or disabled, full, another region, or no server with room), \
            `move_unsupported` (`online` asked for but not possible, client tools missing or \
            too old, target server older than the source)", body = Problem),
        (status = 422, description = "`validation_failed`: the body breaks its schema", body = Problem),
        (status = 503, description = "`server_unavailable`: the source or target server cannot \
            be reached to check the move", body = Problem),
    ))]
pub async fn move_tenant(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Json(request): Json<MoveTenant>,
) -> ApiResult<Response> {
    auth.require_platform_admin()?;
    Ok(accepted(
        state
            .engine
            .move_tenant(&org_id, &request, &auth.actor())
            .await?,
    ))
}

/// Cancel the tenant's move before its switch: it is abandoned at its next step (within about
/// a second while it waits for the target), the tenant stays on its source, and the target's
/// copy is dropped. Answers the move's operation, which ends `failed` with `cancelled`.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/move/cancel", tag = "tenants", operation_id = "cancel_move",
    params(("org_id" = OrgId, Path)),
    responses(
        (status = 202, description = "Cancel asked for", body = Operation),
        (status = 404, body = Problem),
        (status = 409, description = "`invalid_state`: no move under way, or it has switched the \
            tenant already", body = Problem),
    ))]
pub async fn cancel_move(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<Response> {
    auth.require_platform_admin()?;
    Ok(accepted(
        state.engine.cancel_move(&org_id, &auth.actor()).await?,
    ))
}

/// The tenant's moves between servers, newest first: mode, bytes copied, lag at cutover,
/// downtime, the verification, and the source copy kept.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/moves", tag = "tenants", operation_id = "list_tenant_moves",
    params(("org_id" = OrgId, Path)),
    responses((status = 200, body = Vec<TenantMove>), (status = 404, body = Problem)))]
pub async fn moves(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<axum::Json<Vec<TenantMove>>> {
    auth.require_platform_admin()?;
    Ok(axum::Json(state.engine.tenant_moves(&org_id, 100).await?))
}

/// Move a client to another agency (audited).
#[utoipa::path(post, path = "/v1/tenants/{org_id}/move-to-agency", tag = "tenants", operation_id = "move_to_agency",
    params(("org_id" = OrgId, Path)), request_body = MoveToAgency,
    responses(
        (status = 200, description = "Moved", body = Tenant),
        (status = 404, body = Problem),
        (status = 409, description = "`invalid_state` (not a client, or deleted), `unknown_parent`, \
            `invalid_parent` (not an agency, or not active)", body = Problem),
    ))]
pub async fn move_to_agency(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Json(request): Json<MoveToAgency>,
) -> ApiResult<axum::Json<Tenant>> {
    auth.require_platform_admin()?;
    Ok(axum::Json(
        state
            .engine
            .move_to_agency(&org_id, &request.parent_org_id, &auth.actor())
            .await?,
    ))
}
