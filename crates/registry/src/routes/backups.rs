//! `/v1/tenants/{org_id}/backups` and `/v1/tenants/{org_id}/restore`: backups of one tenant's
//! database, their export, and restores from them. Platform admins and the tenant's own admins.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tenancy_core::{
    Backup, BackupKind, BackupPage, Operation, OrgId, Problem, RestoreTenant, RestoreWindow,
};
use utoipa::IntoParams;
use uuid::Uuid;

use super::tenants::accepted;
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// The content type of an export: a `pg_dump` custom-format archive, for `pg_restore`.
pub const ARCHIVE_CONTENT_TYPE: &str = "application/octet-stream";

/// Back the tenant's database up now: `pg_dump` streamed through encryption into the backup
/// store, then read back and checked before it counts. Asking while a backup is under way
/// answers that one.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/backups", tag = "backups", operation_id = "create_backup",
    params(("org_id" = OrgId, Path)),
    responses(
        (status = 202, description = "Backup queued", body = Operation),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 409, description = "`invalid_state` (not active or suspended, or never placed), \
            `operation_in_progress` (another operation of the tenant)", body = Problem),
    ))]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<Response> {
    auth.require_tenant_admin(&org_id)?;
    Ok(accepted(
        state
            .engine
            .request_backup(&org_id, BackupKind::Manual, &auth.actor())
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BackupListParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: backups older than this one.
    pub cursor: Option<Uuid>,
}

/// The tenant's backups, newest first.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/backups", tag = "backups", operation_id = "list_backups",
    params(("org_id" = OrgId, Path), BackupListParams),
    responses(
        (status = 200, body = BackupPage),
        (status = 403, body = Problem),
        (status = 404, body = Problem),
        (status = 400, description = "`invalid_request`: limit out of range, or a cursor that is no backup id", body = Problem),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Query(params): Query<BackupListParams>,
) -> ApiResult<axum::Json<BackupPage>> {
    auth.require_tenant_admin(&org_id)?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=tenancy_control::MAX_BACKUP_PAGE).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 200"));
    }
    let mut backups = state
        .engine
        .backups(&org_id, params.cursor, limit + 1)
        .await?;
    let next_cursor = if backups.len() as i64 > limit {
        backups.truncate(limit as usize);
        backups.last().map(|b| b.id)
    } else {
        None
    };
    Ok(axum::Json(BackupPage {
        backups,
        next_cursor,
    }))
}

/// One backup of the tenant: what it holds (row counts per table, large objects, schema
/// version), its sizes and the SHA-256 of the stored object.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/backups/{backup_id}", tag = "backups", operation_id = "get_backup",
    params(("org_id" = OrgId, Path), ("backup_id" = Uuid, Path)),
    responses(
        (status = 200, body = Backup),
        (status = 403, body = Problem),
        (status = 404, description = "`not_found`: no such tenant, or no such backup of it", body = Problem),
    ))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org_id, backup_id)): Path<(OrgId, Uuid)>,
) -> ApiResult<axum::Json<Backup>> {
    auth.require_tenant_admin(&org_id)?;
    Ok(axum::Json(state.engine.backup(&org_id, backup_id).await?))
}

/// The backup as a plain `pg_dump` custom-format archive (`pg_restore` reads it), decrypted as
/// it streams. Audited. A stored object that does not authenticate ends the response early:
/// fewer bytes than `Content-Length`, which every HTTP client reports.
#[utoipa::path(get, path = "/v1/tenants/{org_id}/backups/{backup_id}/download", tag = "backups", operation_id = "download_backup",
    params(("org_id" = OrgId, Path), ("backup_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The archive", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 403, body = Problem),
        (status = 404, description = "`not_found`: no such tenant, or no such backup of it", body = Problem),
        (status = 409, description = "`invalid_state` (the backup is not completed), \
            `backup_unreadable` (its object is not for this tenant's key, or its header is damaged)", body = Problem),
        (status = 503, description = "`backup_store_unavailable`", body = Problem),
    ))]
pub async fn download(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((org_id, backup_id)): Path<(OrgId, Uuid)>,
) -> ApiResult<Response> {
    auth.require_tenant_admin(&org_id)?;
    let export = state
        .engine
        .export_backup(&org_id, backup_id, &auth.actor())
        .await?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(export.reader));
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, ARCHIVE_CONTENT_TYPE.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{org_id}-{backup_id}.dump\""),
            ),
        ],
        body,
    )
        .into_response();
    if let Some(size) = export.backup.size_bytes {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, size.into());
    }
    Ok(response)
}

/// The moments a point-in-time restore of the tenant reaches now, from the WAL archive of its
/// server (both `null` when that server's WAL is not archived or holds no base backup yet).
#[utoipa::path(get, path = "/v1/tenants/{org_id}/restore-window", tag = "backups", operation_id = "restore_window",
    params(("org_id" = OrgId, Path)),
    responses((status = 200, body = RestoreWindow), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub async fn restore_window(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
) -> ApiResult<axum::Json<RestoreWindow>> {
    auth.require_tenant_admin(&org_id)?;
    Ok(axum::Json(state.engine.restore_window(&org_id).await?))
}

/// Restore the tenant's database in place from one of its completed backups. A `pre_restore`
/// backup of the current data is taken first; the backup is restored beside the live
/// database, verified against the row counts recorded when it was taken, then swapped in (the
/// tenant is blocked only for the swap; the replaced database is kept for the retention
/// period). Routers follow through the change feed. With `into` (platform admins), the backup
/// is copied into a new tenant instead (a `restore_copy` operation of this
/// tenant, which waits for the new tenant's provisioning); this tenant may then be in any
/// status, a deleted one included, until it is purged.
#[utoipa::path(post, path = "/v1/tenants/{org_id}/restore", tag = "backups", operation_id = "restore_tenant",
    params(("org_id" = OrgId, Path)), request_body = RestoreTenant,
    responses(
        (status = 202, description = "Restore queued", body = Operation),
        (status = 403, body = Problem),
        (status = 404, description = "`not_found`: no such tenant, or no such backup of it \
            (another tenant's backup is not found either)", body = Problem),
        (status = 409, description = "`invalid_state` (the tenant is not active or suspended, \
            or the backup is not completed), `operation_in_progress` (a move, a backup or any \
            other operation of the tenant), `tenant_exists` (`into.org_id` is a tenant already), \
            `invalid_target` (`into.org_id` is this tenant)", body = Problem),
        (status = 422, description = "`validation_failed`: the body breaks its schema; \
            `outside_restore_window`: `point_in_time` is before the tenant's restore window, in \
            the future, or its server's WAL is not archived (the answer carries `earliest` and \
            `latest`)", body = Problem),
    ))]
pub async fn restore(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(org_id): Path<OrgId>,
    Json(request): Json<RestoreTenant>,
) -> ApiResult<Response> {
    let engine = &state.engine;
    let source = request.source();
    let op = match request.into_target() {
        None => {
            auth.require_tenant_admin(&org_id)?;
            engine
                .request_restore(&org_id, source, &auth.actor())
                .await?
        }
        Some(into) => {
            auth.require_platform_admin()?;
            engine
                .request_restore_copy(&org_id, source, &into.org_id, into.name, &auth.actor())
                .await?
        }
    };
    Ok(accepted(op))
}
