//! Product quotas for product services: [`Quotas::try_consume`] counts through the registry
//! and answers exactly; [`Quotas::increment`] counts in memory and never waits, and the router
//! flushes the sums to the registry every `quota_flush_interval` (one second by default).
//!
//! The bound on a burst: the registry's count never passes the limit, but between two flushes
//! a process accepts increments without asking, so a burst can pass the limit by what one
//! process counts in one flush interval (plus during a flush in flight). When a flush is
//! refused, what still fits is counted, the rest is dropped
//! (`tenancy_router_quota_dropped_total`), and `increment` fails at once until the period
//! resets (checked again every 30 seconds).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenancy_core::{
    IdempotencyKey, MAX_USAGE_AMOUNT, OrgId, QuotaName, QuotaStatus, UsageCounted, UsageIncrement,
};
use tracing::warn;

use crate::error::RouterError;
use crate::resolver::Resolver;

/// How long a refused quota is refused locally before the registry is asked again.
const RECHECK_EXHAUSTED: Duration = Duration::from_secs(30);

/// One tenant's quotas, through the router: `router.quotas(&org_id)`.
pub struct Quotas {
    pub(crate) org_id: OrgId,
    pub(crate) resolver: Arc<dyn Resolver>,
    pub(crate) counters: Arc<QuotaCounters>,
}

impl Quotas {
    /// Counts `amount` now, through the registry: all of it, or nothing and
    /// [`RouterError::QuotaExceeded`]. For what must never pass the limit (creating a user).
    pub async fn try_consume(
        &self,
        resource: &str,
        amount: u32,
    ) -> Result<UsageCounted, RouterError> {
        let resource = quota_name(resource)?;
        let increment = UsageIncrement {
            amount: checked_amount(amount)?,
            idempotency_key: Some(self.counters.next_key()),
        };
        self.resolver
            .count_usage(&self.org_id, &resource, &increment)
            .await
    }

    /// Counts `amount` in memory, flushed within a flush interval; fails at once when the
    /// quota was found exhausted. For high-rate counting (API calls); see the module's bound.
    pub fn increment(&self, resource: &str, amount: u32) -> Result<(), RouterError> {
        let resource = quota_name(resource)?;
        checked_amount(amount)?;
        self.counters.add(&self.org_id, resource, amount)
    }
}

fn quota_name(resource: &str) -> Result<QuotaName, RouterError> {
    resource
        .parse()
        .map_err(|e: tenancy_core::IdError| RouterError::InvalidQuota(e.to_string()))
}

fn checked_amount(amount: u32) -> Result<std::num::NonZeroU32, RouterError> {
    tenancy_core::usage_amount(u64::from(amount)).ok_or_else(|| {
        RouterError::InvalidQuota(format!("amount {amount}: from 1 to {MAX_USAGE_AMOUNT}"))
    })
}

#[derive(Default)]
struct Counter {
    pending: u64,
    /// A batch sent and not yet acknowledged: resent with the same key, so it counts once.
    in_flight: Option<(IdempotencyKey, u32)>,
    exhausted: Option<(Instant, QuotaStatus)>,
}

/// The in-memory side of [`Quotas::increment`].
pub(crate) struct QuotaCounters {
    counters: Mutex<HashMap<(OrgId, QuotaName), Counter>>,
    process: String,
    sequence: AtomicU64,
}

impl Default for QuotaCounters {
    fn default() -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Self {
            counters: Mutex::default(),
            process: format!("router-{}-{started}", std::process::id()),
            sequence: AtomicU64::new(0),
        }
    }
}

impl QuotaCounters {
    fn next_key(&self) -> IdempotencyKey {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.process)
            .parse()
            .expect("a printable key")
    }

    fn add(&self, org_id: &OrgId, resource: QuotaName, amount: u32) -> Result<(), RouterError> {
        let mut counters = self.counters.lock().expect("quota lock");
        let counter = counters.entry((org_id.clone(), resource)).or_default();
        if let Some((until, quota)) = &counter.exhausted {
            if Instant::now() < *until {
                return Err(RouterError::QuotaExceeded {
                    org_id: org_id.clone(),
                    quota: Box::new(quota.clone()),
                });
            }
            counter.exhausted = None;
        }
        counter.pending += u64::from(amount);
        Ok(())
    }

    /// Moves what is pending into batches to send (a batch still in flight is sent again).
    fn batches(&self) -> Vec<(OrgId, QuotaName, UsageIncrement)> {
        let mut counters = self.counters.lock().expect("quota lock");
        let mut batches = Vec::new();
        for ((org_id, resource), counter) in counters.iter_mut() {
            if counter.in_flight.is_none() && counter.pending > 0 {
                let amount = counter.pending.min(u64::from(MAX_USAGE_AMOUNT));
                counter.pending -= amount;
                let amount = u32::try_from(amount).expect("at most MAX_USAGE_AMOUNT");
                counter.in_flight = Some((self.next_key(), amount));
            }
            if let Some((key, amount)) = &counter.in_flight {
                batches.push((
                    org_id.clone(),
                    resource.clone(),
                    UsageIncrement {
                        amount: checked_amount(*amount).expect("a non-zero batch"),
                        idempotency_key: Some(key.clone()),
                    },
                ));
            }
        }
        counters.retain(|_, c| c.pending > 0 || c.in_flight.is_some() || c.exhausted.is_some());
        batches
    }

    fn settle(&self, org_id: &OrgId, resource: &QuotaName, exhausted: Option<QuotaStatus>) {
        let mut counters = self.counters.lock().expect("quota lock");
        if let Some(counter) = counters.get_mut(&(org_id.clone(), resource.clone())) {
            counter.in_flight = None;
            if let Some(quota) = exhausted {
                let until = quota
                    .resets_at
                    .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
                    .map_or(RECHECK_EXHAUSTED, |left| left.min(RECHECK_EXHAUSTED));
                let dropped = counter.pending;
                counter.pending = 0;
                metrics::counter!("tenancy_router_quota_dropped_total").increment(dropped);
                counter.exhausted = Some((Instant::now() + until, quota));
            }
        }
    }
}

/// Sends every pending batch to the registry once.
pub(crate) async fn flush(resolver: &dyn Resolver, counters: &QuotaCounters) {
    for (org_id, resource, increment) in counters.batches() {
        match resolver.count_usage(&org_id, &resource, &increment).await {
            Ok(_) => counters.settle(&org_id, &resource, None),
            Err(RouterError::QuotaExceeded { quota, .. }) => {
                // Count what still fits, then refuse locally until the period resets.
                let fits = u32::try_from(quota.remaining).unwrap_or(0);
                let dropped = increment.amount.get() - fits.min(increment.amount.get());
                if let Ok(amount) = checked_amount(fits.min(increment.amount.get())) {
                    let rest = UsageIncrement {
                        amount,
                        idempotency_key: Some(counters.next_key()),
                    };
                    if let Err(e) = resolver.count_usage(&org_id, &resource, &rest).await {
                        warn!(%org_id, %resource, error = %e, "quota remainder not counted");
                    }
                }
                metrics::counter!("tenancy_router_quota_dropped_total")
                    .increment(u64::from(dropped));
                counters.settle(&org_id, &resource, Some(*quota));
            }
            Err(RouterError::InvalidQuota(e)) => {
                warn!(%org_id, %resource, error = %e, "usage dropped");
                counters.settle(&org_id, &resource, None);
            }
            // The registry is unreachable: the batch stays in flight and is resent, same key.
            Err(e) => warn!(%org_id, %resource, error = %e, "usage flush failed; retrying"),
        }
    }
}
