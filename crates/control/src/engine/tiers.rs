//! Tiers from the configuration, rolled out to the registry: a tier whose figures changed gets a
//! `retier` of each of its tenants, once, whichever replica starts first; `tenantctl tiers`
//! shows where each stands.

use tenancy_core::{OperationKind, TenantSelector, TenantStatus};
use tracing::info;

use super::Engine;
use crate::error::ControlError;
use crate::store::{LockName, TenantFilter};

/// A tier's rollout, as `tenantctl tiers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TierStatus {
    pub tier: tenancy_core::Tier,
    /// Tenants of the tier, deleted ones aside.
    pub tenants: i64,
    /// Whether every tenant has the configured figures (none queued, none left).
    pub rolled_out: bool,
    /// `retier` operations queued or running.
    pub retiers_open: i64,
    /// The role figures configured.
    pub figures: String,
}

/// What [`Engine::roll_out_tiers`] did for one tier whose figures changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRollout {
    pub tier: tenancy_core::Tier,
    /// `retier` operations queued.
    pub queued: usize,
    /// Tenants left for the next round (another operation was under way).
    pub busy: Vec<tenancy_core::OrgId>,
}

impl Engine {
    /// Refuses a configuration that dropped a tier tenants still have: their limits and pool
    /// sizes would be unknown. Re-tier them first, then remove the tier.
    pub(super) async fn check_tiers_in_use(&self) -> Result<(), ControlError> {
        let config = &self.inner.config;
        let missing: Vec<String> = self
            .inner
            .store
            .tiers_in_use()
            .await?
            .into_iter()
            .filter(|(tier, _)| !config.tiers.contains_key(tier))
            .map(|(tier, count)| format!("{tier} ({count} tenants)"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ControlError::Config(format!(
            "tenants have tiers the configuration does not define: {}; configured: {}. \
             Keep those tiers until their tenants are re-tiered",
            missing.join(", "),
            config.tier_names()
        )))
    }

    /// Rolls changed tier figures out: for each tier whose role figures (connection limit,
    /// timeouts, temp file limit, temporary tables) differ from those last rolled out, queues a
    /// `retier` of every tenant of the tier, then records the figures. A tenant with another operation under way
    /// is left for the next call (the figures stay unrecorded until none is left), so a crash or
    /// a busy tenant only delays the rollout. [`Engine::start`] calls it, and registry processes
    /// every maintenance round, one replica at a time (another one's call answers nothing).
    pub async fn roll_out_tiers(&self) -> Result<Vec<TierRollout>, ControlError> {
        let Some(lock) = self.try_lock(&LockName::Tiers).await? else {
            return Ok(Vec::new());
        };
        let result = self.roll_out_tiers_locked().await;
        lock.release().await;
        result
    }

    async fn roll_out_tiers_locked(&self) -> Result<Vec<TierRollout>, ControlError> {
        let store = &self.inner.store;
        let applied = store.tier_rollouts().await?;
        let mut rollouts = Vec::new();
        for (tier, limits) in &self.inner.config.tiers {
            let figures = limits.role_figures();
            if applied.get(tier) == Some(&figures) {
                continue;
            }
            let filter = TenantFilter::from(TenantSelector {
                tier: Some(tier.clone()),
                ..TenantSelector::default()
            });
            let mut rollout = TierRollout {
                tier: tier.clone(),
                queued: 0,
                busy: Vec::new(),
            };
            for tenant in store.all_tenants(&filter).await? {
                if tenant.status == TenantStatus::Deleted || tenant.server_id.is_none() {
                    continue;
                }
                match store
                    .enqueue_system(&tenant.org_id, OperationKind::Retier)
                    .await?
                {
                    Some(_) => rollout.queued += 1,
                    None => rollout.busy.push(tenant.org_id),
                }
            }
            if rollout.busy.is_empty() {
                store.record_tier_rollout(tier, &figures).await?;
            }
            info!(%tier, queued = rollout.queued, busy = rollout.busy.len(), "tier figures rolled out");
            rollouts.push(rollout);
        }
        Ok(rollouts)
    }

    /// Each configured tier: its tenants, whether its figures are rolled out, and the `retier`
    /// operations still to run (`tenantctl tiers`). Reads only.
    pub async fn tier_status(&self) -> Result<Vec<TierStatus>, ControlError> {
        let store = &self.inner.store;
        let applied = store.tier_rollouts().await?;
        let open = store.retiers_open().await?;
        Ok(self
            .inner
            .config
            .tiers
            .iter()
            .map(|(tier, limits)| {
                let figures = limits.role_figures();
                let (tenants, retiers_open) = open.get(tier).copied().unwrap_or((0, 0));
                TierStatus {
                    tier: tier.clone(),
                    tenants,
                    rolled_out: applied.get(tier) == Some(&figures) && retiers_open == 0,
                    retiers_open,
                    figures,
                }
            })
            .collect())
    }
}
