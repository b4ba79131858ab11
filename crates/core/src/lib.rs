//! Vocabulary shared by every crate of the control plane: typed identifiers validated once at the
//! edge, tenant and operation states, tiers, and the registry API's request and response types.
//! Nothing here does I/O.

mod ids;
mod model;
mod slug;

pub use ids::{DbName, IdError, OrgId, Region, RoleName, ServerId, Slug, TenantName};
pub use model::{
    CreateTenant, Operation, OperationKind, OperationState, ServerState, Step, Tenant,
    TenantStatus, Tier, UnknownVariant,
};
pub use slug::slug_from_name;
