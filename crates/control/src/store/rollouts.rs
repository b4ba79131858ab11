//! Tier rollouts: the role figures of each tier last applied to all of its tenants.

use std::collections::HashMap;

use tenancy_core::Tier;

use super::Store;
use crate::error::ControlError;

impl Store {
    /// The figures last rolled out, by tier.
    pub async fn tier_rollouts(&self) -> Result<HashMap<Tier, String>, ControlError> {
        self.run("tier_rollouts", async {
            sqlx::query_as::<_, (String, String)>("SELECT tier, figures FROM tier_rollouts")
                .fetch_all(self.pool())
                .await?
                .into_iter()
                .map(|(tier, figures)| Ok((tier.parse().map_err(ControlError::corrupt)?, figures)))
                .collect()
        })
        .await
    }

    /// By tier: tenants (not deleted) and their `retier` operations still queued or running.
    pub async fn retiers_open(&self) -> Result<HashMap<Tier, (i64, i64)>, ControlError> {
        self.run("retiers_open", async {
            sqlx::query_as::<_, (String, i64, i64)>(
                "SELECT t.tier, count(*),
                        count(*) FILTER (WHERE EXISTS (
                            SELECT 1 FROM operations o WHERE o.org_id = t.org_id
                            AND o.kind = 'retier' AND o.state IN ('queued', 'running')))
                 FROM tenants t WHERE t.status <> 'deleted' GROUP BY t.tier",
            )
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|(tier, tenants, open)| {
                Ok((
                    tier.parse().map_err(ControlError::corrupt)?,
                    (tenants, open),
                ))
            })
            .collect()
        })
        .await
    }

    /// Records that every tenant of `tier` has (or is queued to get) `figures`.
    pub async fn record_tier_rollout(
        &self,
        tier: &Tier,
        figures: &str,
    ) -> Result<(), ControlError> {
        self.run("record_tier_rollout", async {
            sqlx::query(
                "INSERT INTO tier_rollouts (tier, figures) VALUES ($1, $2)
                 ON CONFLICT (tier) DO UPDATE SET figures = EXCLUDED.figures, rolled_out_at = now()",
            )
            .bind(tier.as_str())
            .bind(figures)
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }
}
