//! `/v1/operations`: following asynchronous work.

use axum::extract::State;
use tenancy_core::Operation;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::ApiResult;
use crate::extract::Path;
use crate::state::AppState;
use tenancy_core::Problem;

/// One operation. Tenant admins may read their own organization's; another organization's
/// answers 404, as a missing one does.
#[utoipa::path(get, path = "/v1/operations/{id}", tag = "operations", operation_id = "get_operation", params(("id" = Uuid, Path)),
    responses((status = 200, body = Operation), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Operation>> {
    let op = state.engine.operation(id).await?;
    if !auth.may_read_tenant(&state.engine, &op.org_id).await? {
        return Err(tenancy_control::ControlError::NotFound {
            what: format!("operation {id}"),
        }
        .into());
    }
    Ok(axum::Json(auth.operation(op)))
}
