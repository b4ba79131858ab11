//! Every lock the control plane takes in the registry database, by name, and the order they are
//! taken in. This file is the one place to read the locking protocol.
//!
//! **Registry-wide locks** ([`LockName`], session advisory locks on a connection of their own,
//! see `Store::try_lock`): at most one holder across every replica and tool; released when the
//! guard is dropped or its holder dies.
//!
//! **Transaction-level locks**, released at commit:
//! - `tenancy.template_version:{server}` (`pg_advisory_xact_lock`, see `servers::TEMPLATE_VERSION_LOCK`):
//!   exclusive while a fleet migration records a server's new template version, shared while a
//!   provisioning activates a tenant at the version it was made at.
//! - `tenancy.change_seq` (in the `tenants_bump_change_seq` trigger): orders the change feed.
//! - Row locks: a tenant's row (`tenants::lock_tenant`), then its operation's; the servers of a
//!   region (`placement::lock_region`) or one target server's row, for placement.
//!
//! On each database server, `tenancy.prepare` (a session advisory lock in `pgadmin`) keeps two
//! engines from preparing the same server's template at once.
//!
//! **Lock order** (every path takes them in this order, never the other way round):
//! 1. a registry-wide lock (a fleet migration, a warm-pool refill, a move's placement);
//! 2. the tenant's row;
//! 3. the tenant's operation's row (the lease fence);
//! 4. server rows (placement);
//! 5. the template-version lock, then the change-feed lock (taken by the trigger at the write).

use std::fmt;

use tenancy_core::{Region, ServerId};

/// A registry-wide lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockName {
    /// A fleet migration: moves and warm-pool refills wait while it runs.
    FleetMigration,
    /// Rolling configured tiers out into the registry at start-up.
    Tiers,
    /// The usage sampler (one replica samples).
    Usage,
    /// The reconciler (one replica reconciles).
    Reconcile,
    /// Applying ZITADEL organization events (one replica applies them).
    OrgSync,
    /// Refilling one server's warm pool.
    WarmPool(ServerId),
    /// Choosing move targets in a region, so that racing moves spread.
    MovePlacement(Region),
    /// Scheduling backups and deleting expired ones (one replica at a time).
    BackupSchedule,
    /// One of a server's `[backups] per_server` slots: held by a backup or restore while it
    /// streams.
    BackupSlot(ServerId, u32),
    /// Keeping one server's WAL archive (one keeper per server across replicas).
    WalKeeper(ServerId),
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockName::FleetMigration => f.write_str("tenancy.fleet_migration"),
            LockName::Tiers => f.write_str("tenancy.tiers"),
            LockName::Usage => f.write_str("tenancy.usage"),
            LockName::Reconcile => f.write_str("tenancy.reconcile"),
            LockName::OrgSync => f.write_str("tenancy.org_sync"),
            LockName::WarmPool(server) => write!(f, "tenancy.warm_pool.{server}"),
            LockName::MovePlacement(region) => write!(f, "tenancy.move_placement.{region}"),
            LockName::BackupSchedule => f.write_str("tenancy.backup_schedule"),
            LockName::BackupSlot(server, slot) => write!(f, "tenancy.backup.{server}.{slot}"),
            LockName::WalKeeper(server) => write!(f, "tenancy.wal_keeper.{server}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_are_the_ones_every_release_used() {
        // Replicas of two releases side by side must agree on every name.
        let server: ServerId = "pg-1".parse().unwrap();
        let region: Region = "eu".parse().unwrap();
        assert_eq!(
            LockName::WarmPool(server).to_string(),
            "tenancy.warm_pool.pg-1"
        );
        assert_eq!(
            LockName::MovePlacement(region).to_string(),
            "tenancy.move_placement.eu"
        );
        assert_eq!(
            LockName::FleetMigration.to_string(),
            "tenancy.fleet_migration"
        );
    }
}
