//! Connection router for product services: `TenantRouter::get(&org_id)` returns a pooled
//! `tokio_postgres` client connected as the tenant's role to the tenant's database.
//!
//! - Resolution (server, database, role, password, status, tier) comes from a [`Resolver`]: the
//!   registry's connection-info endpoint ([`RegistryResolver`]) or a fixed table
//!   ([`StaticResolver`]). It is cached, and the registry's change feed invalidates entries, so a
//!   suspension is refused within a second or two.
//! - Pools are created lazily per tenant and sized by tier. A per-server budget caps the
//!   connections this process opens to one server whatever the number of tenants: idle
//!   connections of the least recently used tenants are closed to make room, and a borrower waits
//!   a bounded time, then gets [`RouterError::PoolTimeout`]. Idle pools are reaped.
//! - [`TenantRouter::settings`] and [`TenantRouter::features`]: the tenant's settings (secrets
//!   in plain text) and features, cached and dropped on the change feed.
//! - [`TenantRouter::quotas`]: product quotas, counted exactly ([`Quotas::try_consume`]) or in
//!   memory and flushed every second ([`Quotas::increment`]).
//! - Metrics (`tenancy_router_*`) never carry a tenant id as a label.

mod error;
mod quotas;
mod resolver;
mod router;
mod settings;

#[cfg(feature = "axum")]
pub mod extract;

pub use error::RouterError;
pub use quotas::Quotas;
pub use resolver::{BoxFuture, RegistryResolver, Resolver, StaticResolver};
pub use router::{
    AGE_EVERY_BORROWS, BudgetedManager, Connection, Eviction, RouterConfig, RouterStats,
    TenantClient, TenantRouter,
};
pub use settings::TenantSettings;
