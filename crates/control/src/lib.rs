//! The control plane's engine: the registry store, placement, durable resumable operations,
//! PostgreSQL administration on every database server, template migrations and the reconciler.
//! No HTTP: the registry service and `tenantctl` sit on top of [`Engine`].
//!
//! Where things are, top down (each imports only from the ones below it; `tests/layout.rs`
//! keeps it so):
//! - `engine/`: the facade, split by concern (tenants, operations, moves, fleet migrations,
//!   tiers, warm pool, quotas, settings, usage, feed, servers, observe, background);
//! - `worker`: claim, heartbeat, retry, fail;
//! - `reconcile`: drift between the registry and the servers, and its repair;
//! - `operations/`: one file per operation kind (its steps, their bodies, its effects);
//! - `archive/`: each server's WAL archive (the keeper) and point-in-time recoveries in scratch
//!   instances;
//! - `admins` + `pgadmin/`: admin connections and PostgreSQL administration per server;
//! - `store/`: the registry database by aggregate (rows stay inside it), the transactions that
//!   span aggregates (`lifecycle`), placement, and the lock names and order (`locks`);
//! - `config`, `secrets`, `migrate`, `pgtools`, `sql`: configuration, master keys, refinery,
//!   the PostgreSQL client tools, identifier quoting.

mod activator;
mod admins;
mod archive;
pub mod backups;
pub mod config;
mod engine;
mod error;
#[cfg(feature = "testing")]
pub mod faults;
pub mod migrate;
mod operations;
pub mod pgadmin;
mod pgtools;
mod reconcile;
pub mod secrets;
pub mod sql;
mod store;
mod telemetry;
mod worker;

pub use activator::{ActivationError, AdminActivation, AdminActivator};
pub use admins::ServerAdmins;
pub use config::{
    ArchiveConfig, BackupsConfig, Config, ConsoleConfig, EngineConfig, MovesConfig, QuotaLimit,
    ServerArchive, ServerConfig, TierLimits, UsageConfig, WarmPoolConfig,
};
pub use engine::fleet;
pub use engine::{
    Authority, BackupRound, Balance, Engine, Export, MAX_BACKUP_PAGE, Onboarded, PlannedMove,
    Refill, Rekeyed, SampleRound, Secrets, TierRollout, TierStatus, Workers, password_env_of,
};
pub use error::ControlError;
pub use reconcile::{Finding, FindingKind, Repair};
pub use store::{
    Actor, AuditEvent, AuditFilter, Cascade, ConsoleSession, LockName, OperationFilter,
    OrgEventOutcome, PendingOrgEvent, RegistryLock, ServerChange, TenantFilter,
};
pub use telemetry::describe_metrics;
