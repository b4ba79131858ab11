//! The control plane's engine: the registry store, placement, durable resumable operations,
//! PostgreSQL administration on every database server, template migrations and the reconciler.
//! No HTTP: the registry service and `tenantctl` sit on top of [`Engine`].
//!
//! Where things are:
//! - `engine/`: the facade, split by concern (tenants, operations, feed, servers, observe,
//!   background);
//! - `store/`: the registry database by aggregate; rows stay inside it;
//! - `operations/`: one file per operation kind (its steps, their bodies, its finish);
//! - `worker`: claim, heartbeat, retry, fail;
//! - `admins` + `pgadmin`: admin connections and PostgreSQL administration per server;
//! - `reconcile`, `fleet`, `migrate`: drift repair, fleet migrations, refinery.

mod activator;
mod admins;
pub mod config;
mod engine;
mod error;
#[cfg(feature = "testing")]
pub mod faults;
pub mod fleet;
pub mod migrate;
mod operations;
pub mod pgadmin;
mod pgtools;
mod reconcile;
pub mod secrets;
pub mod sql;
mod store;
mod worker;

pub use activator::{ActivationError, AdminActivation, AdminActivator};
pub use admins::ServerAdmins;
pub use config::{
    Config, EngineConfig, MovesConfig, QuotaLimit, ServerConfig, TierLimits, UsageConfig,
    WarmPoolConfig,
};
pub use engine::{
    Balance, Engine, Onboarded, PlannedMove, Refill, SampleRound, Secrets, TierRollout, TierStatus,
    Workers,
};
pub use error::ControlError;
pub use reconcile::{Finding, FindingKind, Repair};
pub use store::{
    Actor, AuditEvent, Cascade, OrgEventOutcome, PendingOrgEvent, RegistryLock, ServerChange,
    TenantFilter,
};
