//! ZITADEL organizations drive tenants: added -> onboard, renamed -> rename, deactivated ->
//! suspend, reactivated -> resume, removed -> delete. Both the webhook (events recorded, then
//! applied from a queue in each organization's order) and the periodic sync (a comparison of
//! ZITADEL's organizations with the tenants) come here.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tenancy_control::{
    Actor, ControlError, Engine, OrgEventOutcome, PendingOrgEvent, TenantFilter,
};
use tenancy_core::{
    CreateTenant, ErrorCode, OrgId, SuspendedBy, TenantName, TenantStatus, UpdateTenant,
};
use tenancy_zitadel::ManagementError;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};
use utoipa::ToSchema;

use super::{Identity, Placement};
use crate::error::ApiError;

/// How many times an event is tried before it is given up (about half an hour of backoff).
const EVENT_ATTEMPTS: i32 = 40;

/// What happened to an organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum OrgChange {
    /// A new organization; `place` is read from its metadata when it is applied.
    Added {
        name: TenantName,
        #[serde(default, flatten)]
        place: Placement,
    },
    Renamed {
        name: TenantName,
    },
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

/// An organization's name as a tenant name: ZITADEL allows names a tenant may not have (longer
/// than 128 characters, control characters), so one such name never stops anything. `None` when
/// nothing usable is left.
pub fn tenant_name(name: &str) -> Option<TenantName> {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let truncated: String = cleaned.trim().chars().take(128).collect();
    truncated.trim().parse().ok()
}

/// Conflicts that mean "already so": the tenant is in the state the change asks for, or on its
/// way there. Anything else (a slug that cannot be allocated, say) is an error.
fn already_so(error: &ControlError) -> bool {
    matches!(
        error,
        ControlError::Conflict {
            code: ErrorCode::InvalidState | ErrorCode::TenantExists,
            ..
        } | ControlError::TenantNotFound(_)
    )
}

/// Applies a change to the organization's tenant, once. A tenant already in the state the
/// change asks for, or absent for a change that needs one, is left as it is.
async fn apply_once(
    engine: &Engine,
    org_id: &OrgId,
    change: &OrgChange,
    actor: &Actor,
) -> Result<(), ControlError> {
    let result = match change {
        OrgChange::Added { name, place } => {
            let mut request = CreateTenant::new(org_id.clone(), name.clone());
            request.kind = place.kind;
            request.parent_org_id = place.parent_org_id.clone();
            engine.onboard(request, actor).await.map(drop)
        }
        OrgChange::Renamed { name } => {
            let update = UpdateTenant {
                name: Some(name.clone()),
                tier: None,
            };
            engine.update_tenant(org_id, &update, actor).await.map(drop)
        }
        OrgChange::Deactivated => engine
            .suspend(org_id, SuspendedBy::Zitadel, actor)
            .await
            .map(drop),
        OrgChange::Reactivated => {
            let tenant = engine.tenant(org_id).await?;
            if tenant.suspended_by == Some(SuspendedBy::Zitadel) {
                engine
                    .resume(org_id, SuspendedBy::Zitadel, actor)
                    .await
                    .map(drop)
            } else {
                if tenant.status == TenantStatus::Suspended {
                    info!(%org_id, reason = ?tenant.status_reason, "suspended for another reason: not resumed");
                }
                Ok(())
            }
        }
        OrgChange::Removed => engine
            .delete(org_id, tenancy_control::Cascade::Refuse, actor)
            .await
            .map(drop),
    };
    match result {
        Err(e) if already_so(&e) => Ok(()),
        other => other,
    }
}

/// As [`apply_once`], waiting briefly for an operation under way (a resume right after a
/// suspend) instead of failing: for the sync, which runs in the background.
pub async fn apply(
    engine: &Engine,
    org_id: &OrgId,
    change: &OrgChange,
    actor: &Actor,
) -> Result<(), ControlError> {
    let mut attempts = 0;
    loop {
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
            other => return other,
        }
    }
}

/// How long a new organization's event waits, once, for placement metadata that is not there
/// yet (it is usually written just after the organization is created).
const PLACEMENT_GRACE: Duration = Duration::from_secs(5);

/// Applies one recorded event, and says whether to try it again later.
async fn apply_recorded(
    engine: &Engine,
    identity: Option<&Identity>,
    event: PendingOrgEvent,
) -> OrgEventOutcome {
    let parsed = event
        .org_id
        .parse::<OrgId>()
        .map_err(|e| e.to_string())
        .and_then(|org| {
            serde_json::from_value::<OrgChange>(event.change.clone())
                .map(|change| (org, change))
                .map_err(|e| e.to_string())
        });
    let (org_id, mut change) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return OrgEventOutcome::Failed(format!("unreadable event: {e}")),
    };
    if let (OrgChange::Added { place, .. }, Some(identity)) = (&mut change, identity) {
        match identity.may_onboard(&org_id).await {
            Ok(true) => {}
            // The approval may be written just after the organization: looked for once more.
            Ok(false) if identity.onboards_marked_only() && event.attempts == 0 => {
                return OrgEventOutcome::Later(
                    PLACEMENT_GRACE,
                    "not marked for onboarding yet; looking again once".into(),
                );
            }
            Ok(false) => {
                info!(%org_id, "organization not approved for onboarding; left alone");
                return OrgEventOutcome::Applied;
            }
            Err(e) if e.is_retryable() && event.attempts < EVENT_ATTEMPTS => {
                return OrgEventOutcome::Later(Duration::from_secs(5), e.to_string());
            }
            Err(e) => return OrgEventOutcome::Failed(e.to_string()),
        }
        match identity.placement(&org_id).await {
            Ok(found)
                if found.is_empty() && identity.places_from_metadata() && event.attempts == 0 =>
            {
                return OrgEventOutcome::Later(
                    PLACEMENT_GRACE,
                    "no placement metadata yet; looking again once".into(),
                );
            }
            Ok(found) => *place = found,
            Err(e) if e.is_retryable() && event.attempts < EVENT_ATTEMPTS => {
                return OrgEventOutcome::Later(Duration::from_secs(5), e.to_string());
            }
            Err(e) => {
                warn!(%org_id, error = %e, "organization placement unreadable; not onboarded");
                return OrgEventOutcome::Failed(e.to_string());
            }
        }
    }
    let actor = Actor {
        subject: "zitadel:event".into(),
        org_id: Some(event.org_id.clone()),
        request_id: None,
    };
    match apply_once(engine, &org_id, &change, &actor).await {
        Ok(()) => {
            info!(%org_id, event_type = event.event_type, sequence = event.sequence, "ZITADEL event applied");
            OrgEventOutcome::Applied
        }
        // A client's agency may still be on its way (its own event not applied yet).
        Err(e)
            if (e.is_retryable()
                || e.code() == ErrorCode::OperationInProgress
                || e.code() == ErrorCode::UnknownParent)
                && event.attempts < EVENT_ATTEMPTS =>
        {
            let delay = Duration::from_millis(250 * 2u64.pow(event.attempts.clamp(0, 8) as u32));
            OrgEventOutcome::Later(delay.min(Duration::from_secs(60)), e.to_string())
        }
        Err(e) => {
            warn!(%org_id, event_type = event.event_type, error = %e, "ZITADEL event not applied");
            OrgEventOutcome::Failed(e.to_string())
        }
    }
}

/// Applies recorded events until cancelled; woken by `wake` when the webhook records one, and
/// every second otherwise (events waiting for their retry).
pub fn spawn_event_applier(
    engine: Engine,
    identity: Option<Arc<Identity>>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    tokio::spawn(
        async move {
            loop {
                let notified = wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                match engine
                    .apply_next_org_event(async |event| {
                        apply_recorded(&engine, identity.as_deref(), event).await
                    })
                    .await
                {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "cannot apply ZITADEL events now"),
                }
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
        .instrument(info_span!("org_events")),
    );
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
    /// Organizations whose change could not be applied this run (the log says why); the run
    /// went on with the others.
    pub failed: Vec<String>,
    /// New organizations left alone: not approved for onboarding (`--zitadel-auto-onboard`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_approved: Vec<String>,
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
    let Some(lock) = engine.try_lock(&tenancy_control::LockName::OrgSync).await? else {
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
    let mut report = SyncReport::default();
    let mut changes: Vec<(OrgId, OrgChange)> = Vec::new();
    for org in orgs.iter().filter(|o| !identity.is_ignored(&o.id)) {
        let Ok(org_id) = org.id.parse::<OrgId>() else {
            warn!(
                org_id = org.id,
                "organization id is not usable as a tenant id; skipped"
            );
            report.failed.push(org.id.clone());
            continue;
        };
        let name = tenant_name(&org.name);
        let change = match (live.get(org.id.as_str()), name) {
            (None, Some(name)) if org.is_active() && !known.contains(org.id.as_str()) => {
                let approved = identity.may_onboard(&org_id).await;
                let placed = match approved {
                    Ok(true) => identity.placement(&org_id).await.map(Some),
                    Ok(false) => Ok(None),
                    Err(e) => Err(e),
                };
                match placed {
                    Ok(Some(place)) => Some(OrgChange::Added { name, place }),
                    Ok(None) => {
                        report.not_approved.push(org_id.to_string());
                        None
                    }
                    Err(e) => {
                        warn!(%org_id, error = %e, "organization placement unreadable; not onboarded");
                        report.failed.push(org_id.to_string());
                        None
                    }
                }
            }
            (None, None) if org.is_active() && !known.contains(org.id.as_str()) => {
                warn!(%org_id, "organization has no usable name; not onboarded");
                report.failed.push(org_id.to_string());
                None
            }
            (None, _) => None,
            (Some(t), _) if org.is_inactive() && t.status == TenantStatus::Active => {
                Some(OrgChange::Deactivated)
            }
            (Some(t), _)
                if org.is_active()
                    && t.suspended_by == Some(SuspendedBy::Zitadel)
                    && t.status == TenantStatus::Suspended =>
            {
                Some(OrgChange::Reactivated)
            }
            (Some(t), Some(name)) if t.name != name => Some(OrgChange::Renamed { name }),
            (Some(_), _) => None,
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
    // Agencies before clients, so that a new client's new agency exists when it is onboarded.
    changes.sort_by_key(|(_, change)| {
        matches!(change, OrgChange::Added { place, .. } if place.parent_org_id.is_some())
    });
    // One organization that cannot be applied never stops the others.
    for (org_id, change) in changes {
        info!(%org_id, change = change.label(), "organization sync applies a missed change");
        match apply(engine, &org_id, &change, &actor).await {
            Ok(()) => {
                metrics::counter!("tenancy_org_sync_changes_total", "change" => change.label())
                    .increment(1);
                report.record(&org_id, &change);
            }
            Err(e) => {
                warn!(%org_id, change = change.label(), error = %e, "organization sync could not apply a change");
                report.failed.push(org_id.to_string());
            }
        }
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

impl From<SyncError> for ApiError {
    fn from(error: SyncError) -> Self {
        match error {
            SyncError::Zitadel(e) => ApiError::Zitadel(e),
            SyncError::Control(e) => ApiError::Control(e),
            SyncError::Busy => ApiError::Refused {
                code: ErrorCode::SyncRunning,
                detail: error.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_organization_name_becomes_a_tenant_name_or_none() {
        let long = "N".repeat(300);
        assert_eq!(tenant_name(&long).unwrap().as_str().chars().count(), 128);
        assert_eq!(
            tenant_name("  Acme\u{7}Corp \n").unwrap().as_str(),
            "Acme Corp"
        );
        assert!(tenant_name(" \t ").is_none());
    }
}
