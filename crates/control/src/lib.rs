//! The control plane's engine: the registry store, placement, durable resumable operations,
//! PostgreSQL administration on every database server, template migrations and the reconciler.
//! No HTTP: the registry service and `tenantctl` sit on top of [`Engine`].

mod admin;
pub mod config;
mod engine;
mod error;
pub mod faults;
pub mod fleet;
pub mod migrate;
pub mod pgadmin;
mod reconcile;
pub mod secrets;
pub mod sql;
pub mod store;
mod worker;

pub use admin::{ActivationError, AdminActivation, AdminActivator};
pub use config::{Config, EngineConfig, ServerConfig, TierLimits};
pub use engine::{Engine, Onboarded, Workers};
pub use error::ControlError;
pub use reconcile::{Drift, DriftKind};
pub use store::{Actor, AuditEvent, TenantFilter};
