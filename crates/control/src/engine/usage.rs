//! Usage and storage quotas: a tenant's figures and history, and the sampler, which asks each
//! server once per round for every tenant database's size and sessions, records them, and
//! enforces the tiers' storage quotas: warnings at 80% and 95% (once per crossing), read-only
//! past 100% (in PostgreSQL: `default_transaction_read_only` on the role and the database, its
//! sessions ended), writable again under 95%.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tenancy_core::{ErrorCode, OrgId, ServerId, Tenant, TenantStatus, TenantUsage};
use tracing::{info, instrument, warn};

use super::Engine;
use crate::error::ControlError;
use crate::store::{Sample, TenantFilter};

/// The storage warning levels, in percent of the quota.
const WARNING_LEVELS: [i16; 2] = [80, 95];
/// A read-only tenant becomes writable again under this share of its quota.
const WRITABLE_BELOW_PERCENT: f64 = 95.0;

/// What one sampling round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleRound {
    pub servers: usize,
    pub tenants: usize,
    pub made_read_only: Vec<OrgId>,
    pub made_writable: Vec<OrgId>,
    /// Warning levels crossed, by tenant.
    pub warnings: Vec<(OrgId, i16)>,
    /// Webhook deliveries that succeeded this round (new warnings and retries).
    pub webhooks_delivered: usize,
}

/// Attempts before a webhook delivery is given up (kept, with its last error).
const WEBHOOK_ATTEMPTS: i32 = 12;

/// What a tenant's storage should be, given its size and quota.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StorageVerdict {
    percent: f64,
    read_only: bool,
    warning: i16,
}

fn verdict(size: i64, quota: i64, read_only_now: bool) -> StorageVerdict {
    #[allow(clippy::cast_precision_loss)] // a percentage
    let percent = size as f64 * 100.0 / quota.max(1) as f64;
    let read_only = if read_only_now {
        percent >= WRITABLE_BELOW_PERCENT
    } else {
        size > quota
    };
    let warning = WARNING_LEVELS
        .iter()
        .rev()
        .copied()
        .find(|level| percent >= f64::from(*level))
        .unwrap_or(0);
    StorageVerdict {
        percent,
        read_only,
        warning,
    }
}

impl Engine {
    /// The tenant's size and sessions now, its storage quota, and the sampler's history since
    /// `since` (the last 24 hours by default).
    pub async fn usage(
        &self,
        org_id: &OrgId,
        since: Option<DateTime<Utc>>,
    ) -> Result<TenantUsage, ControlError> {
        let tenant = self.tenant(org_id).await?;
        let server_id = tenant.server_id.clone().ok_or_else(|| {
            ControlError::conflict(
                ErrorCode::NotPlaced,
                format!("tenant {org_id} has no database yet"),
            )
        })?;
        let (size_bytes, connections) = self
            .server_admin(&server_id)
            .await?
            .usage(&tenant.db_name)
            .await?;
        let limits = self.config().tier_limits(&tenant.tier)?;
        let quota = limits.storage_quota.map(quota_bytes);
        let since = since.unwrap_or_else(|| Utc::now() - chrono::Duration::hours(24));
        Ok(TenantUsage {
            org_id: org_id.clone(),
            db_name: tenant.db_name,
            server_id,
            size_bytes,
            connections,
            connection_limit: limits.connection_limit,
            storage_quota_bytes: quota,
            storage_used_percent: quota.map(|q| verdict(size_bytes, q, false).percent),
            read_only: tenant.read_only,
            history: self.store().usage_history(org_id, since).await?,
        })
    }

    /// One sampling round over every server with tenants (see the module's documentation).
    /// Registry processes run it every `usage.sample_interval`, one replica at a time.
    #[instrument(skip_all)]
    pub async fn sample_usage(&self) -> Result<SampleRound, ControlError> {
        let started = Instant::now();
        let now = Utc::now();
        let mut by_server: BTreeMap<ServerId, Vec<Tenant>> = BTreeMap::new();
        for tenant in self.store().all_tenants(&TenantFilter::default()).await? {
            if let (Some(server), false) =
                (&tenant.server_id, tenant.status == TenantStatus::Deleted)
            {
                by_server.entry(server.clone()).or_default().push(tenant);
            }
        }
        let warnings: HashMap<OrgId, i16> =
            self.store().storage_warnings().await?.into_iter().collect();
        let mut round = SampleRound::default();
        for (server_id, tenants) in by_server {
            let admin = match self.server_admin(&server_id).await {
                Ok(admin) => admin,
                Err(e) => {
                    warn!(%server_id, error = %e, "usage: server skipped");
                    continue;
                }
            };
            let figures: HashMap<String, (i64, i64)> = match admin.sample_usage().await {
                Ok(rows) => rows
                    .into_iter()
                    .map(|(db, size, sessions)| (db, (size, sessions)))
                    .collect(),
                Err(e) => {
                    warn!(%server_id, error = %e, "usage: server skipped");
                    continue;
                }
            };
            round.servers += 1;
            let mut samples = Vec::new();
            for tenant in tenants {
                let Some(&(size, connections)) = figures.get(tenant.db_name.as_str()) else {
                    continue;
                };
                samples.push(Sample {
                    org_id: tenant.org_id.clone(),
                    size_bytes: size,
                    connections,
                });
                let level = warnings.get(&tenant.org_id).copied().unwrap_or(0);
                // One tenant's enforcement failing never costs the others theirs: it is tried
                // again next round.
                if let Err(e) = self
                    .enforce_storage(&admin, &tenant, size, level, &mut round)
                    .await
                {
                    warn!(org_id = %tenant.org_id, %server_id, error = %e, "usage: storage quota not enforced this round");
                    metrics::counter!("tenancy_usage_enforcement_failures_total").increment(1);
                }
            }
            round.tenants += samples.len();
            self.store().record_samples(now, &samples).await?;
        }
        round.webhooks_delivered = self.deliver_webhooks().await?;
        let keep =
            chrono::Duration::from_std(self.config().usage.keep).unwrap_or(chrono::Duration::MAX);
        self.store().prune_samples(now - keep).await?;
        metrics::histogram!("tenancy_usage_round_seconds").record(started.elapsed().as_secs_f64());
        Ok(round)
    }

    /// Posts the storage warnings waiting for the webhook, each signed (`X-Tenancy-Signature`)
    /// and numbered (`X-Tenancy-Delivery`, for receivers to drop repeats). A failure is tried
    /// again at later rounds, up to 12 attempts.
    async fn deliver_webhooks(&self) -> Result<usize, ControlError> {
        let usage = &self.config().usage;
        let (Some(url), Some(secret)) = (&usage.warning_webhook_url, &usage.warning_webhook_secret)
        else {
            return Ok(0);
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ControlError::Config(format!("webhook client: {e}")))?;
        let mut delivered = 0;
        for (id, body, attempts) in self.store().due_deliveries(100).await? {
            let bytes = serde_json::to_vec(&body).map_err(ControlError::corrupt)?;
            let signature = crate::secrets::sign_webhook(secret, Utc::now().timestamp(), &bytes);
            let outcome = http
                .post(url)
                .header("content-type", "application/json")
                .header("x-tenancy-signature", signature)
                .header("x-tenancy-delivery", id.to_string())
                .body(bytes)
                .send()
                .await;
            let failure = match outcome {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("answered {}", response.status())),
                Err(e) => Some(e.to_string()),
            };
            metrics::counter!("tenancy_webhook_deliveries_total",
                "outcome" => if failure.is_none() { "delivered" } else { "failed" })
            .increment(1);
            match failure {
                None => {
                    delivered += 1;
                    self.store().record_delivery(id, None).await?;
                }
                Some(error) => {
                    warn!(delivery = id, %error, "storage warning webhook failed");
                    let retry = (attempts + 1 < WEBHOOK_ATTEMPTS)
                        .then(|| chrono::Duration::seconds(30 << attempts.min(6)));
                    self.store()
                        .record_delivery(id, Some((&error, retry)))
                        .await?;
                }
            }
        }
        Ok(delivered)
    }

    async fn enforce_storage(
        &self,
        admin: &crate::pgadmin::ServerAdmin,
        tenant: &Tenant,
        size: i64,
        level: i16,
        round: &mut SampleRound,
    ) -> Result<(), ControlError> {
        let limits = self.config().tier_limits(&tenant.tier)?;
        let quota = limits.storage_quota.map(quota_bytes);
        let verdict = match quota {
            Some(quota) => verdict(size, quota, tenant.read_only),
            // No quota: never read-only, no warnings.
            None => StorageVerdict {
                percent: 0.0,
                read_only: false,
                warning: 0,
            },
        };
        if verdict.warning != level {
            let crossed: Vec<i16> = WARNING_LEVELS
                .into_iter()
                .filter(|l| level < *l && *l <= verdict.warning)
                .collect();
            for l in &crossed {
                metrics::counter!("tenancy_quota_warnings_total", "level" => l.to_string())
                    .increment(1);
                warn!(org_id = %tenant.org_id, level = l, size, "tenant storage past {l}% of its quota");
                round.warnings.push((tenant.org_id.clone(), *l));
            }
            self.store()
                .set_storage_warning(
                    &tenant.org_id,
                    verdict.warning,
                    &crossed,
                    size,
                    quota.unwrap_or(0),
                    self.config().usage.warning_webhook_url.is_some(),
                )
                .await?;
        }
        let (db, role) = (&tenant.db_name, tenant.role_name());
        if verdict.read_only != tenant.read_only {
            // The server first, then the registry: a crash between them is repeated next round.
            admin.set_read_only(db, &role, verdict.read_only).await?;
            if !verdict.read_only && tenant.status == TenantStatus::Active {
                admin.set_temp_tables(db, &role, limits.temp_tables).await?;
            }
            let reason = verdict.read_only.then(|| {
                format!(
                    "storage quota exceeded: {size} bytes of {} ({:.0}%)",
                    quota.unwrap_or(0),
                    verdict.percent
                )
            });
            self.store()
                .set_read_only(&tenant.org_id, reason.as_deref())
                .await?;
            info!(org_id = %tenant.org_id, read_only = verdict.read_only, size, "tenant storage enforcement changed");
            if verdict.read_only {
                round.made_read_only.push(tenant.org_id.clone());
            } else {
                round.made_writable.push(tenant.org_id.clone());
            }
        } else if tenant.read_only {
            // Asserted every round: a fleet migration's new table, a resumption, anything
            // that granted privileges since is taken back.
            admin.set_read_only(db, &role, true).await?;
        }
        Ok(())
    }
}

fn quota_bytes(size: bytesize::ByteSize) -> i64 {
    i64::try_from(size.as_u64()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_past_the_quota_writable_under_95_percent() {
        assert!(
            !verdict(100, 100, false).read_only,
            "at the quota is not over it"
        );
        assert!(verdict(101, 100, false).read_only);
        assert!(
            verdict(96, 100, true).read_only,
            "stays read-only above 95%"
        );
        assert!(!verdict(94, 100, true).read_only);
        assert_eq!(verdict(79, 100, false).warning, 0);
        assert_eq!(verdict(80, 100, false).warning, 80);
        assert_eq!(verdict(97, 100, false).warning, 95);
        assert_eq!(verdict(500, 100, false).warning, 95);
    }
}
