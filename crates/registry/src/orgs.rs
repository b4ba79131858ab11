//! ZITADEL organizations drive tenants: added -> onboard, renamed -> rename, deactivated ->
//! suspend, reactivated -> resume, removed -> delete. Both the webhook (one event at a time) and
//! the periodic sync (a comparison of ZITADEL's organizations with the tenants) come here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tenancy_control::{Actor, ControlError, Engine, TenantFilter};
use tenancy_core::{CreateTenant, ErrorCode, OrgId, TenantStatus, UpdateTenant};
use tenancy_zitadel::ManagementError;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};
use utoipa::ToSchema;

use crate::identity::Identity;

/// The `status_reason` of a tenant suspended because its organization was deactivated. Only such
/// a suspension is undone by a reactivation; an operator's suspension stays.
pub const DEACTIVATED_REASON: &str = "organization deactivated in ZITADEL";

/// What happened to an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgChange {
    Added { name: String },
    Renamed { name: String },
    Deactivated,
    Reactivated,
    Removed,
}

impl OrgChange {
    fn label(&self) -> &'static str {
        match self {
            OrgChange::Added { .. } => "onboarded",
            OrgChange::Renamed { .. } => "renamed",
            OrgChange::Deactivated => "suspended",
            OrgChange::Reactivated => "resumed",
            OrgChange::Removed => "deleted",
        }
    }
}

/// Applies a change to the organization's tenant. A tenant already in the state the change asks
/// for (or on its way there), or absent for a change that needs one, is left as it is.
pub async fn apply(
    engine: &Engine,
    org_id: &OrgId,
    change: &OrgChange,
    actor: &Actor,
) -> Result<(), ControlError> {
    // An operation still under way (a resume right after a suspend) is waited for, briefly.
    let mut attempts = 0;
    let result = loop {
        match apply_once(engine, org_id, change, actor).await {
            Err(ControlError::Conflict {
                code: ErrorCode::OperationInProgress,
                ..
            }) if attempts < 3 => {
                attempts += 1;
                if let Some(open) = engine.latest_operation(org_id).await? {
                    engine
                        .wait_operation(open.id, Duration::from_secs(10))
                        .await?;
                }
            }
            other => break other,
        }
    };
    match result {
        Ok(()) | Err(ControlError::Conflict { .. }) | Err(ControlError::TenantNotFound(_)) => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

async fn apply_once(
    engine: &Engine,
    org_id: &OrgId,
    change: &OrgChange,
    actor: &Actor,
) -> Result<(), ControlError> {
    match change {
        OrgChange::Added { name } => {
            let request = CreateTenant::new(org_id.clone(), name.parse()?);
            engine.onboard(request, actor).await.map(drop)
        }
        OrgChange::Renamed { name } => {
            let update = UpdateTenant {
                name: Some(name.parse()?),
                tier: None,
            };
            engine.update_tenant(org_id, &update, actor).await.map(drop)
        }
        OrgChange::Deactivated => engine
            .suspend_because(org_id, Some(DEACTIVATED_REASON), actor)
            .await
            .map(drop),
        OrgChange::Reactivated => {
            let tenant = engine.tenant(org_id).await?;
            if tenant.status_reason.as_deref() == Some(DEACTIVATED_REASON) {
                engine.resume(org_id, actor).await.map(drop)
            } else {
                if tenant.status == TenantStatus::Suspended {
                    info!(%org_id, reason = ?tenant.status_reason, "suspended for another reason: not resumed");
                }
                Ok(())
            }
        }
        OrgChange::Removed => engine.delete(org_id, actor).await.map(drop),
    }
}

/// What one sync run changed, by organization id.
#[derive(Debug, Default, Serialize, serde::Deserialize, ToSchema)]
pub struct SyncReport {
    pub onboarded: Vec<String>,
    pub renamed: Vec<String>,
    pub suspended: Vec<String>,
    pub resumed: Vec<String>,
    pub deleted: Vec<String>,
    /// Tenants whose organization is gone, left alone because there were more than the
    /// configured maximum of deletions per run.
    pub deletions_refused: Vec<String>,
}

impl SyncReport {
    fn record(&mut self, org_id: &OrgId, change: &OrgChange) {
        let list = match change {
            OrgChange::Added { .. } => &mut self.onboarded,
            OrgChange::Renamed { .. } => &mut self.renamed,
            OrgChange::Deactivated => &mut self.suspended,
            OrgChange::Reactivated => &mut self.resumed,
            OrgChange::Removed => &mut self.deleted,
        };
        list.push(org_id.to_string());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Zitadel(#[from] ManagementError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("another replica is running the organization sync")]
    Busy,
}

/// Compares ZITADEL's organizations with the tenants and applies what differs: the safety net
/// for events that never arrived.
pub async fn sync(engine: &Engine, identity: &Identity) -> Result<SyncReport, SyncError> {
    // One replica at a time: the others would only repeat its reads.
    let Some(lock) = engine.try_lock("tenancy.org_sync").await? else {
        return Err(SyncError::Busy);
    };
    let result = converge(engine, identity).await;
    lock.release().await;
    result
}

async fn converge(engine: &Engine, identity: &Identity) -> Result<SyncReport, SyncError> {
    let actor = Actor::named("zitadel:sync");
    let orgs = identity.management().organizations().await?;
    let tenants = engine.all_tenants(&TenantFilter::default()).await?;
    // Deleted tenants (kept for their retention period) are known but not live.
    let known: HashSet<&str> = tenants.iter().map(|t| t.org_id.as_str()).collect();
    let live: HashMap<&str, _> = tenants
        .iter()
        .filter(|t| !matches!(t.status, TenantStatus::Deleting | TenantStatus::Deleted))
        .map(|t| (t.org_id.as_str(), t))
        .collect();
    let mut changes: Vec<(OrgId, OrgChange)> = Vec::new();
    for org in orgs.iter().filter(|o| !identity.is_ignored(&o.id)) {
        let Ok(org_id) = org.id.parse::<OrgId>() else {
            warn!(
                org_id = org.id,
                "organization id is not usable as a tenant id; skipped"
            );
            continue;
        };
        let change = match live.get(org.id.as_str()) {
            None if org.is_active() && !known.contains(org.id.as_str()) => Some(OrgChange::Added {
                name: org.name.clone(),
            }),
            None => None,
            Some(t) if org.is_inactive() && t.status == TenantStatus::Active => {
                Some(OrgChange::Deactivated)
            }
            Some(t)
                if org.is_active()
                    && t.status_reason.as_deref() == Some(DEACTIVATED_REASON)
                    && t.status == TenantStatus::Suspended =>
            {
                Some(OrgChange::Reactivated)
            }
            Some(t)
                if t.name.as_str() != org.name
                    && org.name.parse::<tenancy_core::TenantName>().is_ok() =>
            {
                Some(OrgChange::Renamed {
                    name: org.name.clone(),
                })
            }
            Some(_) => None,
        };
        changes.extend(change.map(|c| (org_id, c)));
    }
    let listed: HashSet<&str> = orgs.iter().map(|o| o.id.as_str()).collect();
    let mut gone = Vec::new();
    for (id, tenant) in &live {
        if !listed.contains(id) && !identity.is_ignored(id) {
            // The list is paged and eventually consistent: confirm each absence by id.
            if identity.management().organization(id).await?.is_none() {
                gone.push(tenant.org_id.clone());
            }
        }
    }
    let mut report = SyncReport::default();
    if gone.len() > identity.sync_max_deletes {
        error!(
            would_delete = gone.len(),
            max = identity.sync_max_deletes,
            "organization sync: too many tenants have no organization; deleting none \
             (is TENANCY_ZITADEL_ISSUER the right instance?)"
        );
        report.deletions_refused = gone.iter().map(ToString::to_string).collect();
    } else {
        changes.extend(gone.into_iter().map(|id| (id, OrgChange::Removed)));
    }
    for (org_id, change) in changes {
        info!(%org_id, change = change.label(), "organization sync applies a missed change");
        apply(engine, &org_id, &change, &actor).await?;
        metrics::counter!("tenancy_org_sync_changes_total", "change" => change.label())
            .increment(1);
        report.record(&org_id, &change);
    }
    Ok(report)
}

/// Runs the sync every `identity.sync_interval` until cancelled.
pub fn spawn_sync(engine: Engine, identity: Arc<Identity>, cancel: CancellationToken) {
    let interval = identity.sync_interval;
    if interval.is_zero() {
        info!("organization sync is off");
        return;
    }
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = cancel.cancelled() => return,
                }
                let outcome = match sync(&engine, &identity).await {
                    Ok(_) => "ok",
                    Err(SyncError::Busy) => "busy",
                    Err(e) => {
                        warn!(error = %e, "organization sync failed; next run in {interval:?}");
                        "failed"
                    }
                };
                metrics::counter!("tenancy_org_sync_runs_total", "outcome" => outcome).increment(1);
            }
        }
        .instrument(info_span!("org_sync")),
    );
}
