//! The warm pool: spare databases cloned from the template ahead of demand on each active
//! server, so that a provisioning claims one (a rename) instead of cloning.
//!
//! Refilling runs one server at a time under that server's registry lock (one replica refills a
//! server; the others skip it), one clone at a time, so it never clones more than once at once
//! on a server. Under the lock, a spare recorded but not ready is one a crashed refill left: it
//! is dropped. Spares of another template version than the server's are dropped too (a claim
//! takes only the current version) and cloned again: for this template a clone takes tens of
//! milliseconds, less than migrating a spare would (README, "Warm pool").
//!
//! A server that takes no new tenants (draining), or whose size went down, keeps no more
//! spares than its size: the ones beyond it are taken out of the pool (no claim can take them
//! then) and dropped. Disabled servers are left alone: they may be unreachable.
//!
//! Before each clone, refilling looks for work a clone would compete with for the server's I/O:
//! a fleet migration, or a provisioning cloning the template there. It then stops until the
//! next round, which comes soon (`refill_interval`); spares are for the quiet moments.

use std::time::Instant;

use tenancy_core::{ServerId, ServerState};
use tracing::{debug, info, warn};

use super::Engine;
use crate::error::ControlError;
use crate::pgadmin::ServerAdmin;
use crate::store::LockName;

/// What one refill round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refill {
    pub cloned: usize,
    pub dropped: usize,
    /// Servers left short until a later round, so as not to compete with other work.
    pub deferred: usize,
}

impl Engine {
    /// Brings every active server's pool to its size (`[warm_pool]`), dropping spares that can
    /// no longer be claimed and those beyond the size (every one of a draining server). A server
    /// another replica is refilling is skipped.
    pub async fn refill_warm_pool(&self) -> Result<Refill, ControlError> {
        let mut done = Refill::default();
        let holding = self.store().servers_with_spares().await?;
        for server in self.store().servers().await? {
            let Some(version) = server.template_version else {
                continue;
            };
            let size = match server.state {
                ServerState::Active => self.config().warm_pool_size(&server.id) as usize,
                ServerState::Draining => 0,
                ServerState::Disabled => continue,
            };
            if size == 0 && !holding.contains(&server.id) {
                continue;
            }
            let Some(lock) = self
                .try_lock(&LockName::WarmPool(server.id.clone()))
                .await?
            else {
                continue;
            };
            let result = self.refill_server(&server.id, version, size).await;
            lock.release().await;
            match result {
                Ok(refill) => {
                    done.cloned += refill.cloned;
                    done.dropped += refill.dropped;
                    done.deferred += refill.deferred;
                }
                Err(e) => warn!(server_id = %server.id, error = %e, "warm pool not refilled"),
            }
        }
        Ok(done)
    }

    async fn refill_server(
        &self,
        server: &ServerId,
        version: i32,
        size: usize,
    ) -> Result<Refill, ControlError> {
        let admin = self.server_admin(server).await?;
        let mut done = Refill::default();
        let mut available = Vec::new();
        for spare in self.store().spares(server).await? {
            if spare.claimed_by.is_some() {
                continue;
            }
            if spare.ready && spare.template_version == version {
                available.push(spare.db_name);
                continue;
            }
            admin.drop_spare(&spare.db_name).await?;
            self.store().forget_spare(&spare.db_name).await?;
            done.dropped += 1;
        }
        // Those beyond the size, newest first: claims take the oldest.
        let beyond = available.split_off(size.min(available.len()));
        for name in beyond.into_iter().rev() {
            if self.store().retire_spare(&name).await? {
                admin.drop_spare(&name).await?;
                self.store().forget_spare(&name).await?;
                done.dropped += 1;
            }
        }
        let mut available = available.len();
        let at_once = self.config().warm_pool.clones_at_once.max(1) as usize;
        while available < size {
            if let Some(reason) = self.busy_with_clones(server).await? {
                debug!(server_id = %server, reason, "warm pool refill deferred");
                metrics::counter!("tenancy_warm_pool_refill_deferred_total",
                    "server" => server.to_string(), "reason" => reason)
                .increment(1);
                done.deferred = 1;
                break;
            }
            let batch = (size - available).min(at_once);
            let clones = (0..batch).map(|_| self.clone_spare(server, version, &admin));
            for cloned in futures::future::join_all(clones).await {
                cloned?;
                available += 1;
                done.cloned += 1;
            }
        }
        if done != Refill::default() {
            info!(server_id = %server, cloned = done.cloned, dropped = done.dropped, "warm pool refilled");
        }
        Ok(done)
    }

    /// One spare: recorded, cloned and locked down, then ready to be claimed.
    async fn clone_spare(
        &self,
        server: &ServerId,
        version: i32,
        admin: &ServerAdmin,
    ) -> Result<(), ControlError> {
        let started = Instant::now();
        let name = self.store().reserve_spare(server, version).await?;
        admin.clone_spare(&name).await?;
        self.store().spare_ready(&name).await?;
        metrics::histogram!("tenancy_warm_pool_refill_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// What a spare's clone would compete with on the server now, if anything.
    async fn busy_with_clones(
        &self,
        server: &ServerId,
    ) -> Result<Option<&'static str>, ControlError> {
        if self.store().lock_held(&LockName::FleetMigration).await? {
            return Ok(Some("fleet_migration"));
        }
        if self.store().cold_provisioning_running(server).await? {
            return Ok(Some("cold_onboarding"));
        }
        Ok(None)
    }
}
