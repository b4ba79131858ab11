//! Product quotas: counting usage against the tenant's tier, listing and checking quotas, and
//! the usage log.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tenancy_core::{
    OrgId, QuotaCheck, QuotaCheckRequest, QuotaName, QuotaStatus, Tenant, TenantKind, UsageCounted,
    UsageIncrement, UsageLogPage,
};
use tracing::instrument;

use super::Engine;
use crate::config::QuotaLimit;
use crate::error::ControlError;
use crate::store::{Actor, AgencyCap, CountOutcome, Increment};

impl Engine {
    /// Counts `amount` of `resource` for the tenant: all of it if it fits in the quota's
    /// current period (and, for a client, in its agency's cap on the clients' sum), else nothing
    /// (`QuotaExceeded`). A repeated idempotency key counts nothing and answers `replayed`.
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
        let now = Utc::now();
        let window = quota.period.window(now);
        let cap = self
            .agency_cap(&tenant, resource)
            .await?
            .map(|(agency, cap)| (agency, cap, cap.period.window(now)));
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
                agency_cap: cap.as_ref().map(|(agency, cap, window)| AgencyCap {
                    agency_org_id: agency,
                    period_start: window.start,
                    limit: cap.limit,
                }),
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
            CountOutcome::Exceeded { used } => Err(refused(amount, status(used))),
            CountOutcome::AgencyExceeded { used } => {
                let (agency, cap, window) = cap.ok_or_else(|| {
                    ControlError::Corrupt("an agency cap refused where none applied".into())
                })?;
                let status =
                    QuotaStatus::new(resource.clone(), cap.limit, used, cap.period, window)
                        .of_agency(agency);
                Err(refused(amount, status))
            }
        }
    }

    /// A client's agency's cap on its clients' sum of `resource`, if its tier has one.
    async fn agency_cap(
        &self,
        tenant: &Tenant,
        resource: &QuotaName,
    ) -> Result<Option<(OrgId, QuotaLimit)>, ControlError> {
        let Some(parent) = &tenant.parent_org_id else {
            return Ok(None);
        };
        let agency = self.tenant(parent).await?;
        Ok(self
            .config()
            .tier_limits(&agency.tier)?
            .client_quotas
            .get(resource)
            .map(|cap| (parent.clone(), *cap)))
    }

    /// Every quota of the tenant's tier, with what the current periods have counted.
    pub async fn quotas(&self, org_id: &OrgId) -> Result<Vec<QuotaStatus>, ControlError> {
        let tenant = self.tenant(org_id).await?;
        self.quota_statuses(&tenant).await
    }

    /// The tenant's own quotas, then the caps of the agency it is (on its clients' sum) or of
    /// the agency it is a client of (marked with `agency_org_id`).
    async fn quota_statuses(&self, tenant: &Tenant) -> Result<Vec<QuotaStatus>, ControlError> {
        let limits = self.config().tier_limits(&tenant.tier)?;
        let counted = self.store().quota_usage(&tenant.org_id).await?;
        let mut statuses: Vec<QuotaStatus> = statuses_of(&limits.quotas, &counted).collect();
        let agency = match (&tenant.parent_org_id, tenant.kind) {
            (Some(parent), _) => Some(self.tenant(parent).await?),
            (None, TenantKind::Agency) => Some(tenant.clone()),
            (None, _) => None,
        };
        if let Some(agency) = agency {
            let caps = &self.config().tier_limits(&agency.tier)?.client_quotas;
            if !caps.is_empty() {
                let counted = self.store().agency_quota_usage(&agency.org_id).await?;
                statuses.extend(
                    statuses_of(caps, &counted)
                        .map(|status| status.of_agency(agency.org_id.clone())),
                );
            }
        }
        Ok(statuses)
    }

    /// Whether `amount` more would fit, counting nothing: in the tenant's own quota and, for a
    /// client, in its agency's cap. The answer's quota is the one with less room.
    pub async fn check_quota(
        &self,
        org_id: &OrgId,
        request: &QuotaCheckRequest,
    ) -> Result<QuotaCheck, ControlError> {
        let tenant = self.tenant(org_id).await?;
        let statuses = self.quota_statuses(&tenant).await?;
        let applies = |q: &&QuotaStatus| {
            q.resource == request.resource
                && (q.agency_org_id.is_none() || q.agency_org_id == tenant.parent_org_id)
        };
        if !statuses
            .iter()
            .any(|q| applies(&q) && q.agency_org_id.is_none())
        {
            return Err(unknown_quota(&tenant, &request.resource));
        }
        let quota = statuses
            .iter()
            .filter(applies)
            .min_by_key(|q| q.remaining)
            .cloned()
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

/// A refused increment, counted in the refusals metric.
fn refused(amount: u32, quota: QuotaStatus) -> ControlError {
    metrics::counter!("tenancy_quota_refusals_total", "resource" => quota.resource.to_string())
        .increment(1);
    ControlError::QuotaExceeded {
        amount,
        quota: Box::new(quota),
    }
}

/// Each quota's status in its current period, from what the periods have counted.
fn statuses_of<'a>(
    quotas: &'a BTreeMap<QuotaName, QuotaLimit>,
    counted: &'a [(QuotaName, DateTime<Utc>, i64)],
) -> impl Iterator<Item = QuotaStatus> + 'a {
    let now = Utc::now();
    quotas.iter().map(move |(resource, quota)| {
        let window = quota.period.window(now);
        let used = counted
            .iter()
            .find(|(r, start, _)| r == resource && *start == window.start)
            .map_or(0, |(_, _, used)| *used);
        QuotaStatus::new(resource.clone(), quota.limit, used, quota.period, window)
    })
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
