//! `/v1/changes`: the long-poll change feed routers follow to drop suspended tenants at once.

use std::time::Duration;

use axum::extract::State;
use serde::Deserialize;
use tenancy_core::ChangeFeed;
use utoipa::IntoParams;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Query, Wait};
use crate::state::AppState;
use tenancy_core::Problem;

/// How long a long poll without `wait` waits.
const DEFAULT_WAIT: Duration = Duration::from_secs(25);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangesParams {
    /// The `last_seq` of the previous answer; 0 (the default) starts from the beginning.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// How long to wait for a change when there is none yet (default 25s; longer waits are cut
    /// to the registry's maximum, 60s unless configured otherwise).
    #[param(inline)]
    pub wait: Option<Wait>,
    /// Most changes in one answer, 1 to 1000 (default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Tenant changes (status, tier, placement, name) after a sequence number, oldest first. When
/// there are none, the request waits for one up to `wait`.
#[utoipa::path(get, path = "/v1/changes", tag = "routing", operation_id = "list_changes", params(ChangesParams),
    responses((status = 200, body = ChangeFeed), (status = 400, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Query(params): Query<ChangesParams>,
) -> ApiResult<axum::Json<ChangeFeed>> {
    auth.require_router()?;
    let wait = params
        .wait
        .map_or(DEFAULT_WAIT, |w| w.at_most(state.max_wait))
        .min(state.max_wait);
    let limit = params.limit.unwrap_or(500);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    let after = params.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after must not be negative"));
    }
    Ok(axum::Json(state.engine.changes(after, limit, wait).await?))
}
