//! Vocabulary shared by every crate of the control plane: typed identifiers validated once at the
//! edge, tenant and operation states, tiers, the registry API's request and response types, and
//! the error codes every HTTP surface answers with. Nothing here does I/O.

mod ids;
mod model;
mod problem;
mod slug;
mod tls;

pub use ids::{
    DbName, Email, IdError, OrgId, PasswordEnv, PersonName, PgName, Region, RoleName,
    SERVER_PASSWORD_PREFIX, ServerHost, ServerId, Slug, TenantName,
};
pub use model::{
    AddServer, ChangeFeed, ConnectionInfo, CreateOrg, CreateTenant, Operation, OperationKind,
    OperationState, OrgAdmin, Server, ServerState, Step, Tenant, TenantChange, TenantHealth,
    TenantStatus, TenantUsage, Tier, UnknownVariant, UpdateTenant,
};
pub use problem::{ErrorCode, PROBLEM_CONTENT_TYPE, Problem};
pub use slug::slug_from_name;
pub use tls::SslMode;
