//! Product quotas: counting usage against the tenant's tier, listing and checking quotas, and
//! the usage log.

use chrono::Utc;
use tenancy_core::{
    OrgId, QuotaCheck, QuotaCheckRequest, QuotaName, QuotaStatus, Tenant, UsageCounted,
    UsageIncrement, UsageLogPage,
};
use tracing::instrument;

use super::Engine;
use crate::config::QuotaLimit;
use crate::error::ControlError;
use crate::store::{Actor, CountOutcome, Increment};

impl Engine {
    /// Counts `amount` of `resource` for the tenant: all of it if it fits in the quota's
    /// current period, else nothing (`QuotaExceeded`). A repeated idempotency key counts
    /// nothing and answers `replayed`.
    #[instrument(skip_all, fields(%org_id, %resource, amount = increment.amount.get()))]
    pub async fn count_usage(
        &self,
        org_id: &OrgId,
        resource: &QuotaName,
        increment: &UsageIncrement,
        actor: &Actor,
    ) -> Result<UsageCounted, ControlError> {
        let tenant = self.live_tenant(org_id).await?;
        let quota = self.quota_of(&tenant, resource)?;
        let window = quota.period.window(Utc::now());
        let amount = increment.amount.get();
        let counted = self
            .store()
            .count_usage(Increment {
                org_id,
                resource,
                period_start: window.start,
                amount: i64::from(amount),
                limit: quota.limit,
                idempotency_key: increment.idempotency_key.as_ref(),
                actor,
            })
            .await?;
        let status =
            |used| QuotaStatus::new(resource.clone(), quota.limit, used, quota.period, window);
        match counted {
            CountOutcome::Counted { used } => {
                metrics::counter!("tenancy_usage_counted_total", "resource" => resource.to_string())
                    .increment(u64::from(amount));
                Ok(UsageCounted {
                    amount,
                    replayed: false,
                    quota: status(used),
                })
            }
            CountOutcome::Replayed { amount, used } => Ok(UsageCounted {
                amount: u32::try_from(amount).map_err(ControlError::corrupt)?,
                replayed: true,
                quota: status(used),
            }),
            CountOutcome::Exceeded { used } => {
                metrics::counter!("tenancy_quota_refusals_total", "resource" => resource.to_string())
                    .increment(1);
                Err(ControlError::QuotaExceeded {
                    amount,
                    quota: Box::new(status(used)),
                })
            }
        }
    }

    /// Every quota of the tenant's tier, with what the current periods have counted.
    pub async fn quotas(&self, org_id: &OrgId) -> Result<Vec<QuotaStatus>, ControlError> {
        let tenant = self.tenant(org_id).await?;
        self.quota_statuses(&tenant).await
    }

    async fn quota_statuses(&self, tenant: &Tenant) -> Result<Vec<QuotaStatus>, ControlError> {
        let limits = self.config().tier_limits(&tenant.tier)?;
        let counted = self.store().quota_usage(&tenant.org_id).await?;
        let now = Utc::now();
        Ok(limits
            .quotas
            .iter()
            .map(|(resource, quota)| {
                let window = quota.period.window(now);
                let used = counted
                    .iter()
                    .find(|(r, start, _)| r == resource && *start == window.start)
                    .map_or(0, |(_, _, used)| *used);
                QuotaStatus::new(resource.clone(), quota.limit, used, quota.period, window)
            })
            .collect())
    }

    /// Whether `amount` more would fit, counting nothing.
    pub async fn check_quota(
        &self,
        org_id: &OrgId,
        request: &QuotaCheckRequest,
    ) -> Result<QuotaCheck, ControlError> {
        let tenant = self.tenant(org_id).await?;
        let quota = self
            .quota_statuses(&tenant)
            .await?
            .into_iter()
            .find(|q| q.resource == request.resource)
            .ok_or_else(|| unknown_quota(&tenant, &request.resource))?;
        Ok(QuotaCheck {
            allowed: i64::from(request.amount.get()) <= quota.remaining,
            quota,
        })
    }

    /// The tenant's counted increments, newest first; `cursor` is a page's `next_cursor`.
    pub async fn usage_log(
        &self,
        org_id: &OrgId,
        cursor: Option<i64>,
        limit: i64,
    ) -> Result<UsageLogPage, ControlError> {
        self.tenant(org_id).await?;
        let entries = self.store().usage_log(org_id, cursor, limit).await?;
        let next_cursor = (entries.len() as i64 == limit)
            .then(|| entries.last().map(|e| e.id))
            .flatten();
        Ok(UsageLogPage {
            entries,
            next_cursor,
        })
    }

    fn quota_of(&self, tenant: &Tenant, resource: &QuotaName) -> Result<QuotaLimit, ControlError> {
        self.config()
            .tier_limits(&tenant.tier)?
            .quotas
            .get(resource)
            .copied()
            .ok_or_else(|| unknown_quota(tenant, resource))
    }
}

/// A quota the tenant's tier does not define: not found, never unlimited.
fn unknown_quota(tenant: &Tenant, resource: &QuotaName) -> ControlError {
    ControlError::NotFound {
        what: format!(
            "quota {resource} (tier {} defines no such quota)",
            tenant.tier
        ),
    }
}
