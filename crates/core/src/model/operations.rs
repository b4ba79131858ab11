//! Operations as the registry API shows them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::states::{OperationKind, OperationState, ProvisionPath, Step};
use crate::ids::OrgId;

/// A durable unit of control-plane work, as the registry API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Operation {
    pub id: Uuid,
    pub org_id: OrgId,
    pub kind: OperationKind,
    pub state: OperationState,
    pub step: Step,
    pub attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The stable code of the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_code: Option<crate::ErrorCode>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The agency's operation that queued this one for its client (a suspend, resume or delete
    /// cascading from the agency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_operation_id: Option<Uuid>,
    /// A provisioning's way to its database: `warm` (a spare claimed from the warm pool) or
    /// `cold` (cloned from the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_path: Option<ProvisionPath>,
}
