//! Tenant and operation states, and the registry API's request and response bodies, one file per
//! resource (as the registry's routes are).

mod backups;
mod feed;
mod moves;
mod operations;
mod selector;
mod servers;
mod states;
mod tenants;
mod usage;

pub use backups::{
    Backup, BackupPage, RestoreFromBackup, RestoreInto, RestoreSource, RestoreTenant,
    RestoreToMoment, RestoreWindow, WalStatus,
};
pub use feed::{ChangeFeed, TenantChange};
pub use moves::{MoveTenant, TenantMove};
pub use operations::Operation;
pub use selector::TenantSelector;
pub use servers::{AddServer, Server};
pub use states::{
    BackupKind, BackupState, Lane, MoveMode, OperationKind, OperationState, ProvisionPath,
    ServerState, Step, SuspendedBy, TenantKind, TenantPlace, TenantStatus, UnknownVariant,
};
pub use tenants::{
    ConnectionInfo, CreateOrg, CreateTenant, OrgAdmin, Tenant, TenantHealth, UpdateTenant,
};
pub use usage::{TenantUsage, UsageSample};
