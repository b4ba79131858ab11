//! The transactions that change a tenant together with its operations or its move: creating a
//! tenant with its provisioning, asking for an operation or a move, retrying, and every effect
//! an operation has on its tenant when it ends (or, for a move, when it switches). The
//! aggregates they span (`tenants`, `operations`, `moves`) keep their own rows and reads and
//! know nothing of each other; this module is where they meet.
//!
//! Lock order: the tenant's row first (see `tenants::lock_tenant`), then the operation's.
//! Every effect of an operation on its tenant goes through [`Store::apply`], which holds the
//! lease fence, the row lock, the audit event and the change-feed bump (the tenants table's
//! trigger) in one transaction.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tenancy_core::{
    CreateTenant, ErrorCode, Operation, OperationKind, OrgId, ProvisionPath, Region, ServerId,
    Slug, SuspendedBy, Tenant, TenantKind, TenantName, TenantStatus, Tier,
};
use uuid::Uuid;

use super::audit::{Actor, audit, audit_change, commit_audited, commit_change, tenant_snapshot};
use super::moves::{self, MOVABLE, NewMove};
use super::operations::{
    DONE_CHANNEL, Lease, end_failed, end_succeeded, fence, insert_operation, insert_operation_at,
    insert_operation_under, last_failed, open_operation, requeue,
};
use super::placement::{best_target, check_target, choose_server, lock_region};
use super::spares::{Spare, claim_spare_in};
use super::tenants::{
    self, activate, check_agency, delete_row, free_slug, lock_tenant, lock_tenant_if_present,
    mark_deleted, set_credentials, set_server, set_status, stored_request,
};
use super::{Store, Tx, is_unique_violation, notify};
use crate::error::ControlError;
use crate::secrets::Credentials;

/// How a requested operation stands to an agency's clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cascade {
    /// Deleting an agency that has live clients is refused (`has_clients`).
    #[default]
    Refuse,
    /// The agency's delete takes its live clients with it (its `cascade_clients` step deletes
    /// each by an operation of its own).
    WithClients,
    /// Queued by this operation of the client's agency (its `cascade_clients` step).
    From(Uuid),
}

/// What asking for an operation does to its tenant at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Now {
    /// Nothing: the operation changes the tenant when it finishes.
    Unchanged,
    /// The tenant takes this status (not `suspended`: see [`Now::Suspend`]).
    Status(TenantStatus),
    /// The tenant is suspended, by this party.
    Suspend(SuspendedBy),
    /// Nothing yet, but the operation lifts a suspension: asked by this party, which may lift
    /// only what [`SuspendedBy::may_lift`] allows (an agency, only while it is active itself).
    Lift(SuspendedBy),
}

/// How a finished operation changes its tenant.
pub enum Finish {
    /// The tenant takes this status (keeping the reason given when the operation was asked for).
    Status(TenantStatus),
    /// The tenant's database is ready, at this schema version: it becomes active, the record
    /// of the spare it was made from (if any) goes, and `then` (the follow-up operation, such
    /// as inviting its first admin) is queued; all in the same transaction.
    Provisioned {
        schema_version: Option<i32>,
        then: Option<OperationKind>,
    },
    /// The operation changed the servers only (the tenant row was updated when it was asked for).
    Unchanged,
    /// Deleted, its database kept for `retention`.
    Deleted { retention: Duration },
    /// Gone: the tenant row is removed (its operations stay as history).
    Purged,
    /// The role's password was set to this generation under this master key.
    Rotated { generation: i32, key_id: String },
}

/// What an operation does to its tenant at its switch point (a move) or its end.
pub enum Effect {
    /// It ends, succeeded, with this change to the tenant.
    Finish(Finish),
    /// A move switches the tenant from `source` to `target` (safe to repeat: a tenant on the
    /// target already is left as is).
    Switched { source: ServerId, target: ServerId },
}

/// How an operation ended, as its last step recorded it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub operation: Operation,
    /// The tenant after it; `None` once its row is gone (purged).
    pub tenant: Option<Tenant>,
}

/// A new tenant with its first operation, ready to insert.
pub struct NewTenant<'a> {
    pub org_id: &'a OrgId,
    pub request: &'a CreateTenant,
    pub slug: &'a Slug,
    pub region: &'a Region,
    pub tier: &'a Tier,
    pub kind: TenantKind,
    /// Whether the slug was given by the caller (a collision is then a conflict) or derived.
    pub explicit_slug: bool,
    /// The master key the tenant's first password derives from.
    pub key_id: &'a str,
    /// Whether to claim a spare of the warm pool on the server the tenant is placed on.
    pub claim_spare: bool,
    /// The worker that runs the provisioning at once (it is inserted running, leased to it);
    /// `None` queues it for any worker.
    pub runner: Option<Lease<'a>>,
    /// Servers the onboarding process cannot reach: not chosen.
    pub avoid: &'a [ServerId],
}

impl NewTenant<'_> {
    /// The request as the registry keeps it (`tenants.request`), with defaults resolved: a repeat
    /// of the same request normalizes to the same value, whatever the tenant became since (a
    /// rename, a re-tier). Used both to insert and to compare.
    fn normalized(&self) -> Value {
        let req = self.request;
        serde_json::json!({
            "name": req.name, "slug": req.slug, "region": self.region, "tier": self.tier,
            "parent_org_id": req.parent_org_id, "admin_email": req.admin_email,
            "kind": req.kind,
        })
    }
}

/// What `create_tenant` did.
pub enum Created {
    /// A new tenant and its provisioning operation. The tenant is placed when a server of its
    /// region had room (the operation then starts at its `role` step), with the spare it
    /// claimed, if any.
    New(Box<Recorded>),
    /// The same request was made before: the tenant as it is.
    Existing(Box<Tenant>),
}

/// A new tenant as onboarding recorded it.
pub struct Recorded {
    pub tenant: Tenant,
    pub operation: Operation,
    pub spare: Option<Spare>,
    pub credentials: Credentials,
}

/// What asking for a move did.
pub enum Requested {
    Queued(Operation),
    /// The chosen target is no longer the best (another move or placement took room there
    /// meanwhile): check the move against this one and ask again.
    Elsewhere(ServerId),
}

impl Store {
    /// Inserts a tenant and its provisioning operation, or returns the existing tenant when the
    /// same request was made before. A derived slug that is taken gets a numeric suffix; an
    /// explicit one is a conflict.
    pub async fn create_tenant(
        &self,
        new: NewTenant<'_>,
        actor: &Actor,
    ) -> Result<Created, ControlError> {
        self.run("create_tenant", async {
            // A concurrent insert of the same slug aborts our transaction; start over with the
            // next one.
            for _ in 0..8 {
                match self.try_create_tenant(&new, actor).await {
                    // The same organization inserted concurrently: the next round finds it.
                    Err(e) if is_unique_violation(&e, "tenants_pkey") => continue,
                    Err(e)
                        if is_unique_violation(&e, "tenants_slug_key")
                            || is_unique_violation(&e, "tenants_db_name_key")
                            || is_unique_violation(&e, "tenants_role_name_key") =>
                    {
                        if new.explicit_slug {
                            return Err(ControlError::conflict(
                                ErrorCode::SlugTaken,
                                format!("slug {} is already used by another tenant", new.slug),
                            ));
                        }
                        continue;
                    }
                    other => return other,
                }
            }
            Err(ControlError::conflict(
                ErrorCode::SlugTaken,
                "could not allocate a free slug",
            ))
        })
        .await
    }

    async fn try_create_tenant(
        &self,
        new: &NewTenant<'_>,
        actor: &Actor,
    ) -> Result<Created, ControlError> {
        let req = new.request;
        let normalized = new.normalized();
        let mut tx = self.begin().await?;
        if let Some((stored, status)) = stored_request(&mut tx, new.org_id).await? {
            if stored != normalized {
                return Err(ControlError::conflict(
                    ErrorCode::TenantExists,
                    format!(
                        "tenant {} already exists with a different request (status {status})",
                        new.org_id
                    ),
                ));
            }
            let tenant = lock_tenant(&mut tx, new.org_id).await?;
            return Ok(Created::Existing(Box::new(tenant)));
        }
        if let Some(parent) = &req.parent_org_id {
            check_agency(&mut tx, parent).await?;
        }
        let slug = if new.explicit_slug {
            new.slug.clone()
        } else {
            free_slug(&mut tx, new.slug).await?
        };
        // Placed here rather than by the operation's first step: one transaction less on the
        // way to the tenant's database. Without room, the `place` step tries again later.
        let server = choose_server(&mut tx, new.region, new.avoid).await?;
        let nonce = uuid::Uuid::new_v4();
        let insert = tenants::Insert {
            org_id: new.org_id,
            request: req,
            normalized: &normalized,
            slug: &slug,
            region: new.region,
            tier: new.tier,
            kind: new.kind,
            key_id: new.key_id,
            server: server.as_ref(),
            nonce,
        };
        let tenant = tenants::insert(&mut tx, insert).await?;
        let kind = OperationKind::Provision;
        let (spare, first_step) = match &server {
            Some(server) if new.claim_spare => (
                claim_spare_in(&mut *tx, new.org_id, server).await?,
                kind.first_step_placed(),
            ),
            Some(_) => (None, kind.first_step_placed()),
            None => (None, kind.first_step()),
        };
        let op = insert_operation_at(&mut tx, new.org_id, kind, first_step, new.runner).await?;
        commit_change(tx, actor, "tenant.create", None, Some(&tenant)).await?;
        let credentials = Credentials {
            org_id: new.org_id.clone(),
            role: slug.role_name(),
            nonce,
            generation: 1,
            key_id: Some(new.key_id.to_owned()),
        };
        Ok(Created::New(Box::new(Recorded {
            tenant,
            operation: op,
            spare,
            credentials,
        })))
    }

    /// Renames a tenant and/or changes its tier. A tier change queues a `retier` operation that
    /// applies the new limits on the server; the tier itself (and so router pool sizes) changes
    /// at once.
    pub async fn update_tenant(
        &self,
        org_id: &OrgId,
        name: Option<&TenantName>,
        tier: Option<&Tier>,
        actor: &Actor,
    ) -> Result<(Tenant, Option<Operation>), ControlError> {
        self.run("update_tenant", async {
            let mut tx = self.begin().await?;
            let before = lock_tenant(&mut tx, org_id).await?;
            let mut op = None;
            if tier.is_some_and(|t| *t != before.tier) {
                if !matches!(
                    before.status,
                    TenantStatus::Active | TenantStatus::Suspended
                ) {
                    return Err(ControlError::conflict(
                        ErrorCode::InvalidState,
                        format!(
                            "cannot change the tier of tenant {org_id} while it is {}",
                            before.status
                        ),
                    ));
                }
                op = Some(insert_operation(&mut tx, org_id, OperationKind::Retier).await?);
            }
            let after = tenants::rename_or_retier(&mut tx, org_id, name, tier).await?;
            commit_change(tx, actor, "tenant.update", Some(&before), Some(&after)).await?;
            Ok((after, op))
        })
        .await
    }

    /// Queues an operation on a tenant whose status is one of `from`, moving it to `status_now`
    /// (when given, with `reason`) in the same transaction. An open operation of the same kind is
    /// returned as is; one of another kind is a conflict.
    pub async fn request_operation(
        &self,
        org_id: &OrgId,
        kind: OperationKind,
        from: &[TenantStatus],
        now: Now,
        cascade: Cascade,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.run("request_operation", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            if let Now::Lift(lifter) = now
                && tenant.status == TenantStatus::Suspended
            {
                check_lift(&mut tx, &tenant, lifter).await?;
            }
            // A suspension or a deletion preempts a move that has not switched yet.
            let mut preempted = None;
            if let Some(open) = open_operation(&mut tx, org_id).await? {
                if open.kind == kind {
                    return Ok(open);
                }
                let preempts = open.kind == OperationKind::Move
                    && matches!(kind, OperationKind::Suspend | OperationKind::Deprovision);
                if !preempts {
                    return Err(in_progress(org_id, &open));
                }
                preempted = Some(open);
            }
            if !from.contains(&tenant.status) {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!(
                        "cannot {kind} tenant {org_id} while it is {}",
                        tenant.status
                    ),
                ));
            }
            // An agency goes after its clients: deleting one with live clients is refused (unless
            // the delete takes them along), and purging one with clients at all (dropping its
            // database before finding out its row cannot go). New clients wait for this lock
            // (`check_agency`), so none can slip in between.
            let takes_clients =
                kind == OperationKind::Deprovision && cascade == Cascade::WithClients;
            if matches!(kind, OperationKind::Purge | OperationKind::Deprovision) && !takes_clients {
                let clients: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM tenants WHERE parent_org_id = $1
                     AND ($2 OR status <> 'deleted')",
                )
                .bind(org_id.as_str())
                .bind(kind == OperationKind::Purge)
                .fetch_one(&mut *tx)
                .await?;
                if clients > 0 {
                    let what = if kind == OperationKind::Purge {
                        "purge"
                    } else {
                        "delete"
                    };
                    return Err(ControlError::conflict(
                        ErrorCode::HasClients,
                        format!(
                            "tenant {org_id} is the agency of {clients} tenant(s); {what} them \
                             first{}",
                            if kind == OperationKind::Deprovision {
                                ", or delete with cascade=true to delete them with it"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
            let op = match preempted {
                // Queued by the move's end, once it is abandoned (see `Store::fail`).
                Some(the_move) => {
                    if !moves::request_cancel(&mut tx, the_move.id, &actor.subject, Some(kind))
                        .await?
                    {
                        return Err(in_progress(org_id, &the_move));
                    }
                    the_move
                }
                None => {
                    let parent = match cascade {
                        Cascade::From(parent) => Some(parent),
                        Cascade::Refuse | Cascade::WithClients => None,
                    };
                    insert_operation_under(&mut tx, org_id, kind, parent).await?
                }
            };
            let after = match now {
                Now::Status(status) => set_status(&mut tx, org_id, status, None, None).await?,
                Now::Suspend(by) => {
                    set_status(
                        &mut tx,
                        org_id,
                        TenantStatus::Suspended,
                        Some(by.reason()),
                        Some(by),
                    )
                    .await?
                }
                Now::Unchanged | Now::Lift(_) => tenant.clone(),
            };
            let action = format!("tenant.{kind}");
            commit_change(tx, actor, &action, Some(&tenant), Some(&after)).await?;
            Ok(op)
        })
        .await
    }

    /// Asks that the tenant's move, if it has not switched yet, be abandoned: its worker undoes
    /// it at its next check and the tenant stays on its source. Returns the move's operation.
    pub async fn cancel_move(
        &self,
        org_id: &OrgId,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.run("cancel_move", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            let the_move = open_operation(&mut tx, org_id)
                .await?
                .filter(|op| op.kind == OperationKind::Move)
                .ok_or_else(|| {
                    ControlError::conflict(
                        ErrorCode::InvalidState,
                        format!("tenant {org_id} has no move under way"),
                    )
                })?;
            if !moves::request_cancel(&mut tx, the_move.id, &actor.subject, None).await? {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!(
                        "tenant {org_id}'s move has switched it to its target already; move it \
                         back with an undo once it has finished"
                    ),
                ));
            }
            audit(
                &mut tx,
                actor,
                "tenant.move_cancel",
                Some(org_id),
                None,
                Some(serde_json::json!({ "operation_id": the_move.id, "server_id": tenant.server_id })),
            )
            .await?;
            tx.commit().await?;
            Ok(the_move)
        })
        .await
    }

    /// Queues an operation for the engine itself (reconciler, janitor), with an audit event;
    /// `None` when the tenant has one under way already.
    pub async fn enqueue_system(
        &self,
        org_id: &OrgId,
        kind: OperationKind,
    ) -> Result<Option<Operation>, ControlError> {
        self.run("enqueue_system", async {
            let mut tx = self.begin().await?;
            if open_operation(&mut tx, org_id).await?.is_some() {
                return Ok(None);
            }
            let op = insert_operation(&mut tx, org_id, kind).await?;
            commit_audited(
                tx,
                &Actor::system(),
                &format!("operation.{kind}"),
                Some(org_id),
                None,
                None,
            )
            .await?;
            Ok(Some(op))
        })
        .await
    }

    /// Puts the tenant's last failed operation back in the queue with a fresh attempt budget.
    pub async fn retry_failed(
        &self,
        org_id: &OrgId,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.run("retry_failed", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            if let Some(open) = open_operation(&mut tx, org_id).await? {
                return Ok(open);
            }
            let last = last_failed(&mut tx, org_id).await?;
            let Some(last) = last else {
                // Failed with no failed operation: the reconciler found its database missing.
                // A converge checks that it is back, and makes the tenant active again.
                if tenant.status == TenantStatus::Failed && tenant.server_id.is_some() {
                    let op = insert_operation(&mut tx, org_id, OperationKind::Converge).await?;
                    commit_change(tx, actor, "tenant.retry", Some(&tenant), Some(&tenant)).await?;
                    return Ok(op);
                }
                return Err(ControlError::conflict(
                    ErrorCode::NothingToRetry,
                    format!("tenant {org_id} has no failed operation to retry"),
                ));
            };
            let op = requeue(&mut tx, last.id).await?;
            let after =
                if tenant.status == TenantStatus::Failed && last.kind == OperationKind::Provision {
                    set_status(&mut tx, org_id, TenantStatus::Provisioning, None, None).await?
                } else {
                    tenant.clone()
                };
            commit_change(tx, actor, "tenant.retry", Some(&tenant), Some(&after)).await?;
            Ok(op)
        })
        .await
    }

    /// Marks the operation failed for good; a failed provisioning marks the tenant failed.
    pub async fn fail(
        &self,
        op: &Operation,
        worker: &str,
        error: &ControlError,
    ) -> Result<(), ControlError> {
        self.run("fail", async {
            let mut tx = self.begin().await?;
            // The tenant's row before the operation's (see `lock_tenant`).
            let before = match op.kind {
                OperationKind::Provision | OperationKind::Move => {
                    lock_tenant_if_present(&mut tx, &op.org_id).await?
                }
                _ => None,
            };
            end_failed(&mut tx, op.id, worker, error).await?;
            if op.kind == OperationKind::Move {
                // What preempted the move runs now that it is abandoned.
                if let Some(Some(then)) = moves::cancel_of(&mut tx, op.id).await? {
                    insert_operation_under(&mut tx, &op.org_id, then, Some(op.id)).await?;
                }
            }
            let before = before.filter(|_| op.kind == OperationKind::Provision);
            if let Some(before) = before {
                let reason = format!("provisioning failed at step {}: {error}", op.step);
                let after = set_status(
                    &mut tx,
                    &op.org_id,
                    TenantStatus::Failed,
                    Some(&reason),
                    None,
                )
                .await?;
                let system = Actor::system();
                audit_change(
                    &mut tx,
                    &system,
                    "tenant.failed",
                    Some(&before),
                    Some(&after),
                )
                .await?;
            }
            notify(&mut tx, DONE_CHANNEL, &op.id.to_string()).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Ends an operation successfully and applies its effect on the tenant, atomically; fenced
    /// by the lease.
    pub async fn finish(
        &self,
        op: &Operation,
        worker: &str,
        effect: Finish,
    ) -> Result<Finished, ControlError> {
        let effect = std::future::ready(Ok(effect));
        self.finish_after(op, worker, effect, std::future::ready(Ok(())))
            .await
    }

    /// [`Self::finish`] for an effect known only once `effect` resolves, and that holds only
    /// once `check` has succeeded (the tenant's verifying login, say). The transaction starts at
    /// once, fencing the lease and locking the tenant's and the operation's rows; the effect's
    /// statements follow when it is known; the transaction commits once `check` has succeeded
    /// too, and rolls back when either failed (the check's error is returned first). The step's
    /// last work and the registry's round trips overlap instead of adding up.
    pub async fn finish_after(
        &self,
        op: &Operation,
        worker: &str,
        effect: impl Future<Output = Result<Finish, ControlError>>,
        check: impl Future<Output = Result<(), ControlError>>,
    ) -> Result<Finished, ControlError> {
        let (written, checked) = tokio::join!(
            self.run("finish", self.write_effect(op, worker, effect)),
            check
        );
        checked?;
        let (tx, finished) = written?;
        self.run("finish_commit", async { Ok(tx.commit().await?) })
            .await?;
        // Counted once committed: a claim rolled back or repeated after a crash is not a use.
        if let Some(path) = finished.operation.provision_path {
            metrics::counter!("tenancy_warm_pool_claims_total", "path" => path.as_str())
                .increment(1);
        }
        Ok(finished)
    }

    /// Applies `effect`, an operation's change to its tenant, in one transaction fenced by the
    /// operation's lease, its tenant's row locked: the change, its audit event and (the end of
    /// an operation) the notice to those waiting for it. A move's switch goes through here
    /// mid-run; every kind's end through [`Self::finish`].
    pub(crate) async fn apply(
        &self,
        op: &Operation,
        worker: &str,
        effect: Effect,
    ) -> Result<Option<Finished>, ControlError> {
        match effect {
            Effect::Finish(finish) => self.finish(op, worker, finish).await.map(Some),
            Effect::Switched { source, target } => {
                self.run("switch_move", async {
                    let mut tx = self.begin().await?;
                    let before = lock_tenant(&mut tx, &op.org_id).await?;
                    fence(&mut tx, op.id, worker).await?;
                    if before.server_id.as_ref() == Some(&target) {
                        return Ok(None);
                    }
                    if before.server_id.as_ref() != Some(&source) {
                        return Err(ControlError::Corrupt(format!(
                            "tenant {} is on {:?}, neither the move's source nor its target",
                            op.org_id, before.server_id
                        )));
                    }
                    // Checked under the tenant's lock, which a cancel takes too: a move is
                    // either cancelled or switched, never both.
                    if moves::cancel_of(&mut tx, op.id).await?.is_some() {
                        return Err(ControlError::conflict(
                            ErrorCode::Cancelled,
                            "the move was cancelled before its switch",
                        ));
                    }
                    let after = set_server(&mut tx, &op.org_id, &target).await?;
                    moves::mark_switched(&mut tx, op.id).await?;
                    let system = Actor::system();
                    commit_change(tx, &system, "tenant.moved", Some(&before), Some(&after)).await?;
                    Ok(None)
                })
                .await
            }
        }
    }

    /// The statements of [`Self::finish_after`], in the transaction returned for its commit.
    async fn write_effect(
        &self,
        op: &Operation,
        worker: &str,
        effect: impl Future<Output = Result<Finish, ControlError>>,
    ) -> Result<(Tx, Finished), ControlError> {
        let org_id = &op.org_id;
        let mut tx = self.begin().await?;
        // The tenant's row before the operation's (see `lock_tenant`); a purge taken over and
        // finished by another worker has deleted it, which the lease check below tells.
        let before = lock_tenant_if_present(&mut tx, org_id).await?;
        let mut operation = end_succeeded(&mut tx, op.id, worker).await?;
        let before = before.ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))?;
        let (action, after): (String, Option<Tenant>) = match effect.await? {
            Finish::Status(status) => {
                // A status set when the operation was asked for keeps the reason given then.
                let same = before.status == status;
                let reason = before.status_reason.as_deref().filter(|_| same);
                let by = before.suspended_by.filter(|_| same);
                let after = set_status(&mut tx, org_id, status, reason, by).await?;
                (format!("tenant.{status}"), Some(after))
            }
            Finish::Unchanged => (format!("operation.{}", op.kind), Some(before.clone())),
            Finish::Provisioned {
                schema_version,
                then,
            } => {
                let (after, from_spare) = activate(&mut tx, op.id, &before, schema_version).await?;
                operation.provision_path = Some(if from_spare {
                    ProvisionPath::Warm
                } else {
                    ProvisionPath::Cold
                });
                if let Some(next) = then {
                    insert_operation(&mut tx, org_id, next).await?;
                }
                ("tenant.active".to_owned(), Some(after))
            }
            Finish::Deleted { retention } => (
                "tenant.deleted".to_owned(),
                Some(mark_deleted(&mut tx, org_id, retention).await?),
            ),
            Finish::Purged => {
                delete_row(&mut tx, org_id).await?;
                ("tenant.purged".to_owned(), None)
            }
            Finish::Rotated { generation, key_id } => (
                "tenant.credentials_rotated".to_owned(),
                Some(set_credentials(&mut tx, org_id, generation, &key_id).await?),
            ),
        };
        audit_change(
            &mut tx,
            &Actor::system(),
            &action,
            Some(&before),
            after.as_ref(),
        )
        .await?;
        notify(&mut tx, DONE_CHANNEL, &op.id.to_string()).await?;
        Ok((
            tx,
            Finished {
                operation,
                tenant: after,
            },
        ))
    }

    /// Queues a move of the tenant, with its record, in one transaction: the tenant must still
    /// be on `source` in a movable status with no operation under way, and the target active, in
    /// the tenant's region and under capacity (its row locked, so racing moves cannot overfill
    /// it). Asking again while the same move is open returns it.
    pub async fn request_move(
        &self,
        org_id: &OrgId,
        new: NewMove<'_>,
        actor: &Actor,
    ) -> Result<Requested, ControlError> {
        self.run("request_move", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            if let Some(open) = open_operation(&mut tx, org_id).await? {
                if open.kind == OperationKind::Move {
                    return Ok(Requested::Queued(open));
                }
                return Err(ControlError::conflict(
                    ErrorCode::OperationInProgress,
                    format!(
                        "tenant {org_id} has a {} operation in progress ({})",
                        open.kind, open.id
                    ),
                ));
            }
            if !MOVABLE.contains(&tenant.status) {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!("cannot move tenant {org_id} while it is {}", tenant.status),
                ));
            }
            if tenant.server_id.as_ref() != Some(new.source) {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!("tenant {org_id} is no longer on server {}", new.source),
                ));
            }
            // Placements and moves of the region queue here, so racing requests spread, and
            // every one locks the region's servers in the same order (the move's record then
            // only reads them, through its foreign keys).
            lock_region(&mut tx, &tenant.region).await?;
            if new.target_chosen {
                let best = best_target(&mut *tx, &tenant, new.avoid).await?;
                if &best != new.target {
                    return Ok(Requested::Elsewhere(best));
                }
            }
            check_target(&mut tx, &tenant, new.target).await?;
            let op = insert_operation_under(&mut tx, org_id, OperationKind::Move, None).await?;
            moves::insert(&mut tx, op.id, org_id, &new).await?;
            audit(
                &mut tx,
                actor,
                "tenant.move",
                Some(org_id),
                Some(tenant_snapshot(&tenant)),
                Some(serde_json::json!({
                    "operation_id": op.id,
                    "source_server_id": new.source,
                    "target_server_id": new.target,
                    "mode": new.mode,
                })),
            )
            .await?;
            tx.commit().await?;
            Ok(Requested::Queued(op))
        })
        .await
    }
}

/// Refuses a resumption `lifter` may not make (see [`Now::Lift`]). The agency's status is read
/// without a lock: an agency suspended just after this read suspends the client again (its
/// cascade waits for this resumption to end).
async fn check_lift(tx: &mut Tx, tenant: &Tenant, lifter: SuspendedBy) -> Result<(), ControlError> {
    let suspender = tenant.suspended_by.unwrap_or(SuspendedBy::Platform);
    if !lifter.may_lift(suspender) {
        return Err(ControlError::conflict(
            ErrorCode::Forbidden,
            format!(
                "tenant {} was suspended by {suspender}; only {} may resume it",
                tenant.org_id,
                match suspender {
                    SuspendedBy::Platform => "a platform admin",
                    SuspendedBy::Zitadel =>
                        "its organization's reactivation in ZITADEL, or a platform admin",
                    SuspendedBy::Agency => "its agency's admins, or a platform admin",
                    SuspendedBy::AgencyCascade => "its agency's resumption, or a platform admin",
                }
            ),
        ));
    }
    if lifter == SuspendedBy::Agency
        && let Some(agency) = &tenant.parent_org_id
    {
        let status: String = sqlx::query_scalar("SELECT status FROM tenants WHERE org_id = $1")
            .bind(agency.as_str())
            .fetch_one(&mut **tx)
            .await?;
        if status != TenantStatus::Active.as_str() {
            return Err(ControlError::conflict(
                ErrorCode::InvalidState,
                format!(
                    "agency {agency} is {status}: its admins resume none of its clients until it is active"
                ),
            ));
        }
    }
    Ok(())
}

/// `operation_in_progress`: the tenant has `open` under way.
pub(super) fn in_progress(org_id: &OrgId, open: &Operation) -> ControlError {
    ControlError::conflict(
        ErrorCode::OperationInProgress,
        format!(
            "tenant {org_id} has a {} operation in progress ({})",
            open.kind, open.id
        ),
    )
}
