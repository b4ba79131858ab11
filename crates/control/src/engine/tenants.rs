//! Onboarding and the tenant lifecycle. Each change is recorded (with its audit event) and
//! queues an operation in one transaction; the workers do the rest.

use std::time::{Duration, Instant};

use tenancy_core::{
    CreateTenant, ErrorCode, Operation, OperationKind, OperationState, OrgId, Region, ServerId,
    Slug, SuspendedBy, Tenant, TenantKind, TenantStatus, Tier, UpdateTenant, slug_from_name,
};
use tracing::{info, instrument};

use super::Engine;
use crate::error::ControlError;
use crate::operations::Prefetched;
use crate::store::{
    Actor, Cascade, Created, Lease, NewTenant, Now, OrgEventOutcome, PendingOrgEvent, Recorded,
    TenantFilter,
};

/// What [`Engine::rekey`] did.
#[derive(Debug)]
pub struct Rekeyed {
    /// Credential rotations queued (active and suspended tenants).
    pub queued: Vec<Operation>,
    /// Tenants moved to the current key in the registry alone (the others).
    pub in_registry: Vec<OrgId>,
    /// Tenants still on another key, and not being rotated now (an operation under way):
    /// run it again later; the previous key must stay until this is empty.
    pub left: Vec<OrgId>,
}

/// What onboarding did.
#[derive(Debug, Clone)]
pub enum Onboarded {
    /// A new tenant, with the operation that provisions it.
    Created {
        tenant: Tenant,
        operation: Operation,
    },
    /// The same request was made before; nothing new was made.
    Existing { tenant: Tenant },
}

impl Engine {
    /// Onboards an organization: records the tenant (placed on a server, with a spare of the
    /// warm pool claimed when there is one) and queues its provisioning. Idempotent per
    /// `org_id`: the same request again returns the existing tenant, a different one is a
    /// conflict.
    pub async fn onboard(
        &self,
        request: CreateTenant,
        actor: &Actor,
    ) -> Result<Onboarded, ControlError> {
        Ok(self.onboard_with(request, actor, None).await?.0)
    }

    /// Onboards as [`Engine::onboard`], then waits up to `wait` for the provisioning to end,
    /// and returns the tenant and operation as they are then. While this process runs its
    /// workers and has a run slot free, the provisioning runs here at once, without waiting for
    /// a worker; otherwise the workers (of any replica) run it.
    pub async fn onboard_and_wait(
        &self,
        request: CreateTenant,
        actor: &Actor,
        wait: Duration,
    ) -> Result<Onboarded, ControlError> {
        if wait.is_zero() {
            return self.onboard(request, actor).await;
        }
        let slot = self.run_slot();
        let leased_at = Instant::now();
        let lease = slot.as_ref().map(|slot| Lease {
            worker: slot.worker(),
            length: self.config().engine.lease,
        });
        let (onboarded, known) = self.onboard_with(request, actor, lease).await?;
        let Onboarded::Created { tenant, operation } = onboarded else {
            return Ok(onboarded);
        };
        let id = operation.id;
        let deadline = tokio::time::Instant::now() + wait;
        if let Some(slot) = slot {
            let known = Prefetched {
                leased_at: Some(leased_at),
                ..known
            };
            // Cut short, the run goes on without the request.
            if let Ok(Ok(Some(finished))) =
                tokio::time::timeout_at(deadline, slot.run(operation, known)).await
            {
                return Ok(Onboarded::Created {
                    tenant: finished.tenant.unwrap_or(tenant),
                    operation: finished.operation,
                });
            }
        }
        // Also after a run here that ended in a retry: the workers take it from there.
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let operation = self.wait_operation(id, remaining).await?;
        let tenant = match operation.state {
            OperationState::Succeeded => self.tenant(&tenant.org_id).await?,
            _ => tenant,
        };
        Ok(Onboarded::Created { tenant, operation })
    }

    #[instrument(skip_all, fields(org_id = ?request.org_id))]
    async fn onboard_with(
        &self,
        request: CreateTenant,
        actor: &Actor,
        runner: Option<Lease<'_>>,
    ) -> Result<(Onboarded, Prefetched), ControlError> {
        let region = self.check_onboarding(&request)?;
        let org_id = request.org_id.as_ref().ok_or_else(|| {
            ControlError::Validation(
                "org_id is required (or create_org, to create the organization in ZITADEL)".into(),
            )
        })?;
        let slug = slug_of(&request, org_id);
        let new = NewTenant {
            org_id,
            request: &request,
            slug: &slug,
            region: &region,
            tier: request.tier.as_ref().unwrap_or(&self.config().default_tier),
            kind: tenant_kind(&request)?,
            explicit_slug: request.slug.is_some(),
            key_id: self.keyring().current().id(),
            claim_spare: self.config().warm_pool_on(),
            runner,
            avoid: &self.admins().unreachable(),
        };
        match self.store().create_tenant(new, actor).await? {
            Created::New(recorded) => {
                let Recorded {
                    tenant,
                    operation,
                    spare,
                    credentials,
                } = *recorded;
                info!(op_id = %operation.id, db_name = %tenant.db_name, server_id = tenant.server_id.as_ref().map(ServerId::as_str),
                    spare = ?spare.as_ref().map(|s| &s.db_name), "tenant recorded, provisioning queued");
                let known = Prefetched {
                    tenant: Some(tenant.clone()),
                    claimed_spare: Some(spare),
                    credentials: Some(credentials),
                    leased_at: None,
                };
                Ok((Onboarded::Created { tenant, operation }, known))
            }
            Created::Existing(tenant) => Ok((
                Onboarded::Existing { tenant: *tenant },
                Prefetched::default(),
            )),
        }
    }

    /// Checks what can be checked of an onboarding request before anything is created (here or
    /// in ZITADEL); returns the region the tenant goes to.
    pub fn check_onboarding(&self, request: &CreateTenant) -> Result<Region, ControlError> {
        let config = self.config();
        let region = match &request.region {
            Some(region) => region.clone(),
            None => config.default_region().ok_or_else(|| {
                ControlError::conflict(
                    ErrorCode::UnknownRegion,
                    "no region given and no default region configured",
                )
            })?,
        };
        if !config.servers.iter().any(|s| s.region == region) {
            return Err(ControlError::conflict(
                ErrorCode::UnknownRegion,
                format!("no database server in region {region}"),
            ));
        }
        if let Some(tier) = &request.tier {
            self.check_tier(tier)?;
        }
        tenant_kind(request)?;
        if request.admin_email.is_some() && self.inner.activator.get().is_none() {
            return Err(ControlError::conflict(
                ErrorCode::ZitadelNotConfigured,
                "admin_email needs ZITADEL's management API configured (see docs/zitadel.md)",
            ));
        }
        Ok(region)
    }

    /// Suspends an active tenant: its status changes at once (routers refuse it from the next
    /// change-feed answer), then its role can no longer log in and open sessions are ended.
    /// `by` is recorded: it decides who may resume the tenant (see [`SuspendedBy::may_lift`]).
    pub async fn suspend(
        &self,
        org_id: &OrgId,
        by: SuspendedBy,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.store()
            .request_operation(
                org_id,
                OperationKind::Suspend,
                &[TenantStatus::Active],
                Now::Suspend(by),
                Cascade::Refuse,
                actor,
            )
            .await
    }

    /// Undoes a suspension, if `by` may lift it: a platform admin lifts any; ZITADEL, an
    /// agency (while it is active itself) and an agency's cascade only their own (`forbidden`
    /// otherwise).
    pub async fn resume(
        &self,
        org_id: &OrgId,
        by: SuspendedBy,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.store()
            .request_operation(
                org_id,
                OperationKind::Resume,
                &[TenantStatus::Suspended],
                Now::Lift(by),
                Cascade::Refuse,
                actor,
            )
            .await
    }

    /// Soft delete: the tenant is refused at once (`deleting`), its database kept for the
    /// retention period, then dropped. An agency with live clients is refused (`has_clients`)
    /// unless `cascade` is [`Cascade::WithClients`]: then each client is deleted by an operation
    /// of its own, with the same retention.
    pub async fn delete(
        &self,
        org_id: &OrgId,
        cascade: Cascade,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.store()
            .request_operation(
                org_id,
                OperationKind::Deprovision,
                crate::operations::DELETABLE,
                Now::Status(TenantStatus::Deleting),
                cascade,
                actor,
            )
            .await
    }

    /// Drops a deleted tenant's database and role now, without waiting for the retention period.
    pub async fn purge(&self, org_id: &OrgId, actor: &Actor) -> Result<Operation, ControlError> {
        self.store()
            .request_operation(
                org_id,
                OperationKind::Purge,
                &[TenantStatus::Deleted],
                Now::Unchanged,
                Cascade::Refuse,
                actor,
            )
            .await
    }

    /// Gives the tenant's role a new password (the next generation, under the current master
    /// key); routers pick it up through the change feed.
    pub async fn rotate_credentials(
        &self,
        org_id: &OrgId,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        use TenantStatus::*;
        self.store()
            .request_operation(
                org_id,
                OperationKind::RotateCredentials,
                &[Active, Suspended],
                Now::Unchanged,
                Cascade::Refuse,
                actor,
            )
            .await
    }

    /// Moves every tenant whose password does not derive from the current master key yet to it
    /// (the second half of rotating the master key): active and suspended tenants by a
    /// credential rotation each; any other (failed, provisioning, deleting, deleted) in the
    /// registry alone, its role being blocked or absent. Tenants with an operation under way
    /// are left for a later run, and reported in `left`.
    pub async fn rekey(&self, actor: &Actor) -> Result<Rekeyed, ControlError> {
        let current = self.keyring().current().id().to_owned();
        let mut queued = Vec::new();
        for org_id in self.store().tenants_to_rekey(&current).await? {
            match self.rotate_credentials(&org_id, actor).await {
                Ok(op) => queued.push(op),
                Err(e) if e.code() == tenancy_core::ErrorCode::OperationInProgress => {}
                Err(e) => return Err(e),
            }
        }
        let in_registry = self.store().rekey_in_registry(&current, actor).await?;
        let rotating: std::collections::HashSet<&OrgId> =
            queued.iter().map(|op| &op.org_id).collect();
        let left = self
            .store()
            .tenants_on_other_keys(&current)
            .await?
            .into_iter()
            .filter(|org_id| !rotating.contains(org_id))
            .collect();
        Ok(Rekeyed {
            queued,
            in_registry,
            left,
        })
    }

    /// Runs the tenant's last failed operation again with a fresh attempt budget.
    pub async fn retry(&self, org_id: &OrgId, actor: &Actor) -> Result<Operation, ControlError> {
        self.store().retry_failed(org_id, actor).await
    }

    /// Renames and/or re-tiers a tenant; returns it and the `retier` operation when the tier
    /// changed.
    pub async fn update_tenant(
        &self,
        org_id: &OrgId,
        update: &UpdateTenant,
        actor: &Actor,
    ) -> Result<(Tenant, Option<Operation>), ControlError> {
        if let Some(tier) = &update.tier {
            self.check_tier(tier)?;
        }
        self.store()
            .update_tenant(org_id, update.name.as_ref(), update.tier.as_ref(), actor)
            .await
    }

    /// Refuses a tier the configuration does not define. The OpenAPI document lists the
    /// configured tiers, so this is a schema violation (422), not a conflict.
    fn check_tier(&self, tier: &Tier) -> Result<(), ControlError> {
        let config = self.config();
        if config.tiers.contains_key(tier) {
            Ok(())
        } else {
            Err(ControlError::Validation(format!(
                "unknown tier {tier}; the tiers are: {}",
                config.tier_names()
            )))
        }
    }

    /// Moves a client to another agency (an agency tenant, active or provisioning).
    pub async fn move_to_agency(
        &self,
        org_id: &OrgId,
        agency: &OrgId,
        actor: &Actor,
    ) -> Result<Tenant, ControlError> {
        if org_id == agency {
            return Err(ControlError::conflict(
                ErrorCode::InvalidParent,
                "a tenant cannot be its own agency",
            ));
        }
        self.store().move_to_agency(org_id, agency, actor).await
    }

    /// A tenant that is not deleted: usage may be counted for it and its settings changed.
    pub(super) async fn live_tenant(&self, org_id: &OrgId) -> Result<Tenant, ControlError> {
        let tenant = self.tenant(org_id).await?;
        if tenant.status == TenantStatus::Deleted {
            return Err(ControlError::conflict(
                ErrorCode::InvalidState,
                format!("tenant {org_id} is deleted"),
            ));
        }
        Ok(tenant)
    }

    pub async fn tenant(&self, org_id: &OrgId) -> Result<Tenant, ControlError> {
        self.store()
            .tenant(org_id)
            .await?
            .ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))
    }

    /// One page of tenants matching the filter, ordered by `org_id`.
    pub async fn list_tenants(&self, filter: &TenantFilter) -> Result<Vec<Tenant>, ControlError> {
        self.store().list_tenants(filter).await
    }

    /// Every tenant matching the filter (its `after` and `limit` are ignored).
    pub async fn all_tenants(&self, filter: &TenantFilter) -> Result<Vec<Tenant>, ControlError> {
        self.store().all_tenants(filter).await
    }

    /// Records a tenant's schema version and its last migration error (cleared on success).
    pub(crate) async fn record_migration(
        &self,
        org_id: &OrgId,
        version: Option<i32>,
        error: Option<&str>,
    ) -> Result<(), ControlError> {
        self.store().record_migration(org_id, version, error).await
    }

    /// Records a ZITADEL organization event for the applier, unless it (or a later event of the
    /// organization) was recorded before; true when it was recorded now.
    pub async fn record_org_event(
        &self,
        org_id: &str,
        sequence: i64,
        event_type: &str,
        change: Option<&serde_json::Value>,
    ) -> Result<bool, ControlError> {
        self.store()
            .record_org_event(org_id, sequence, event_type, change)
            .await
    }

    /// Applies the next recorded organization event with `apply`; false when none is due.
    pub async fn apply_next_org_event<F>(&self, apply: F) -> Result<bool, ControlError>
    where
        F: AsyncFnOnce(PendingOrgEvent) -> OrgEventOutcome,
    {
        self.store().apply_next_org_event(apply).await
    }
}

/// The kind a create request makes: `client` with a `parent_org_id`, else `standalone` unless
/// it says `agency`. A `kind` that contradicts `parent_org_id` breaks the schema (422); whether
/// the parent can take clients (it exists, is a live agency, is not the tenant itself) is a
/// conflict (409).
fn tenant_kind(request: &CreateTenant) -> Result<TenantKind, ControlError> {
    match (request.kind, &request.parent_org_id) {
        (None | Some(TenantKind::Client), Some(parent)) => {
            if request.org_id.as_ref() == Some(parent) {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidParent,
                    "a tenant cannot be its own agency",
                ));
            }
            Ok(TenantKind::Client)
        }
        (Some(kind), Some(_)) => Err(ControlError::Validation(format!(
            "only a client has a parent_org_id; {} tenant has none",
            kind.with_article()
        ))),
        (Some(TenantKind::Client), None) => Err(ControlError::Validation(
            "a client names its agency in parent_org_id".into(),
        )),
        (kind, None) => Ok(kind.unwrap_or(TenantKind::Standalone)),
    }
}

/// The tenant's slug: the one asked for, or one derived from its name, or, for a name with no
/// letter or digit, from its organization's id (`org_<org_id>`): never a made-up one that says
/// nothing of the tenant.
fn slug_of(request: &CreateTenant, org_id: &OrgId) -> Slug {
    request.slug.clone().unwrap_or_else(|| {
        slug_from_name(request.name.as_str())
            .or_else(|| slug_from_name(&format!("org {org_id}")))
            .expect("an organization id has a letter or digit")
    })
}
