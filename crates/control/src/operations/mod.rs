//! Operation kinds, one file each: the steps a kind runs, what each step does, and how the kind
//! finishes. The worker (`crate::worker`) knows none of this; it claims an operation and calls
//! [`run_step`] until the kind's steps are done.
//!
//! Adding a kind means: its file here, its variant of `OperationKind` (in `tenancy-core`), and a
//! registry migration that allows it in `operations.kind`. The exhaustive matches below make the
//! compiler point at everything else.
//!
//! Every step is idempotent: a worker that dies anywhere in a step leaves work that the next
//! worker (after the lease expires) repeats safely.

mod activate_admin;
mod backup;
mod converge;
mod deprovision;
mod move_tenant;
mod provision;
mod purge;
mod restore;
mod resume;
mod retier;
mod rotate_credentials;
mod suspend;

use secrecy::SecretString;
use tenancy_core::{Lane, Operation, OperationKind, Step, Tenant, TenantSelector};

use crate::activator::AdminActivator;
use crate::admins::ServerAdmins;
use crate::config::{Config, EngineConfig, TierLimits};
use crate::error::ControlError;
use crate::pgadmin::ServerAdmin;
use crate::secrets::{self, Credentials, Keyring};
use crate::store::{Effect, Finish, Store};

/// The statuses a tenant can be deleted from.
pub(crate) const DELETABLE: &[tenancy_core::TenantStatus] = &[
    tenancy_core::TenantStatus::Active,
    tenancy_core::TenantStatus::Suspended,
    tenancy_core::TenantStatus::Failed,
];

/// How many attempts an operation of `kind` gets before it fails for good: the identity lane
/// (inviting an admin) depends on the identity provider and has a budget of its own.
pub(crate) fn max_attempts(kind: OperationKind, engine: &EngineConfig) -> i32 {
    match kind.lane() {
        Lane::Identity => engine.admin_activation_attempts,
        Lane::Tenant | Lane::Backup => engine.max_attempts,
    }
}

/// Whether a worker can run `kind`: the identity lane needs an identity provider. A worker that
/// cannot run a kind never claims it; another replica will.
pub(crate) fn runnable(kind: OperationKind, has_activator: bool) -> bool {
    match kind.lane() {
        Lane::Identity => has_activator,
        Lane::Tenant | Lane::Backup => true,
    }
}

/// Whether a step's work is worth recording as the operation's advance. A step that changed
/// nothing a repeat would not redo as cheaply is not: the worker goes on to the next step
/// without a registry write, and after a crash the step runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Advance {
    Record,
    Skip,
}

/// Runs one step of the context's operation; says whether to record it.
pub(crate) async fn run_step(
    cx: &mut StepContext<'_>,
    step: Step,
) -> Result<Advance, ControlError> {
    let recorded = |()| Advance::Record;
    match cx.op.kind {
        OperationKind::Provision => provision::run(cx, step).await,
        OperationKind::Suspend => suspend::run(cx, step).await.map(recorded),
        OperationKind::Resume => resume::run(cx, step).await.map(recorded),
        OperationKind::Retier => retier::run(cx, step).await.map(recorded),
        OperationKind::Deprovision => deprovision::run(cx, step).await.map(recorded),
        OperationKind::Purge => purge::run(cx, step).await.map(recorded),
        OperationKind::ActivateAdmin => activate_admin::run(cx, step).await.map(recorded),
        OperationKind::RotateCredentials => rotate_credentials::run(cx, step).await.map(recorded),
        OperationKind::Converge => converge::run(cx, step).await.map(recorded),
        OperationKind::Move => move_tenant::run(cx, step).await.map(recorded),
        OperationKind::Backup => backup::run(cx, step).await.map(recorded),
        OperationKind::Restore | OperationKind::RestoreCopy => {
            restore::run(cx, step).await.map(recorded)
        }
    }
}

/// What whoever claimed an operation knows of it already, so that its run does not read it
/// again (the request that onboards a tenant and runs its provisioning at once).
#[derive(Default)]
pub(crate) struct Prefetched {
    pub tenant: Option<Tenant>,
    /// The warm-pool spare the operation's tenant holds (see [`provision::Run`]).
    pub claimed_spare: Option<Option<crate::store::Spare>>,
    pub credentials: Option<Credentials>,
    /// When the lease was taken (before it was asked for).
    pub leased_at: Option<std::time::Instant>,
}

/// Undoes what an operation that gives up for good leaves half done, before it is marked
/// failed; an error here keeps the operation queued so that this is tried again. Only a move
/// has anything to undo (see `move_tenant`), a backup (its object) and a restore (its fresh
/// database).
pub(crate) async fn abandon(
    cx: &mut StepContext<'_>,
    why: &ControlError,
) -> Result<(), ControlError> {
    match cx.op.kind {
        OperationKind::Move => move_tenant::abandon(cx, why).await,
        OperationKind::Backup => backup::abandon(cx, why).await,
        OperationKind::Restore | OperationKind::RestoreCopy => restore::abandon(cx, why).await,
        _ => Ok(()),
    }
}

pub(crate) use move_tenant::requirements as move_requirements;
pub(crate) use restore::compare_contents;

/// What a step may use: the registry, the servers' admin connections, the configuration, the
/// identity provider, and the operation with its tenant. Nothing else of the engine.
pub(crate) struct StepContext<'a> {
    pub store: &'a Store,
    pub admins: &'a ServerAdmins,
    pub config: &'a Config,
    pub keyring: &'a Keyring,
    pub backups: &'a crate::backups::BackupStore,
    pub activator: Option<&'a dyn AdminActivator>,
    pub op: &'a Operation,
    /// The worker holding the operation's lease: finishing is fenced by it.
    pub worker: &'a str,
    pub tenant: Tenant,
    /// The tenant's credentials, once read: only a rotation's last step changes them.
    pub credentials: Option<Credentials>,
    /// When this worker last extended the operation's lease by advancing it (taken before the
    /// advance was sent, so the lease runs at least `lease` from then).
    pub lease_extended_at: Option<std::time::Instant>,
    /// What this run of a provisioning learned on its way.
    pub provision: provision::Run,
    /// What this run of a move read of its move.
    pub moving: move_tenant::Run,
    /// How the operation ended, once its last step ended it.
    pub finished: Option<crate::store::Finished>,
}

impl StepContext<'_> {
    /// The admin connections of the tenant's server, for a change there; the tenant must be
    /// placed.
    async fn admin(&self) -> Result<ServerAdmin, ControlError> {
        self.placed_admin().await?.ok_or_else(|| {
            ControlError::Corrupt(format!(
                "tenant {} is not placed on a server",
                self.tenant.org_id
            ))
        })
    }

    /// The admin connections of the tenant's server for a change there, or `None` when it was
    /// never placed. The change is fenced by the lease: a worker whose operation was taken over
    /// (its lease expired) gets [`ControlError::LeaseLost`] instead of applying a stale change.
    async fn placed_admin(&self) -> Result<Option<ServerAdmin>, ControlError> {
        match &self.tenant.server_id {
            Some(server) => self.admin_of(server).await.map(Some),
            None => Ok(None),
        }
    }

    /// The admin connections of `server` for a change there, fenced by the lease like
    /// [`Self::placed_admin`].
    ///
    /// A lease extended within the last quarter of its length is renewed no sooner: it is this
    /// worker's for three quarters more at least, and the renewal would be a registry write on the
    /// way of every step.
    async fn admin_of(&self, server: &tenancy_core::ServerId) -> Result<ServerAdmin, ControlError> {
        let lease = self.config.engine.lease;
        let fresh = self
            .lease_extended_at
            .is_some_and(|at| at.elapsed() < lease / 4);
        if !fresh
            && !self
                .store
                .renew_lease(self.op.id, self.worker, lease)
                .await?
        {
            return Err(ControlError::LeaseLost);
        }
        self.admins.get(server).await
    }

    /// What the tenant role's password derives from now.
    async fn credentials(&mut self) -> Result<Credentials, ControlError> {
        if let Some(known) = &self.credentials {
            return Ok(known.clone());
        }
        let read = self
            .store
            .credentials(&self.tenant.org_id)
            .await?
            .ok_or_else(|| ControlError::TenantNotFound(self.tenant.org_id.clone()))?;
        self.credentials = Some(read.clone());
        Ok(read)
    }

    /// The tenant role's password, derived from its master key.
    async fn password(&mut self) -> Result<SecretString, ControlError> {
        let credentials = self.credentials().await?;
        secrets::tenant_password(self.keyring, &credentials)
    }

    fn limits(&self) -> Result<&TierLimits, ControlError> {
        self.config.tier_limits(&self.tenant.tier)
    }

    /// Whether the tenant's role may have temporary tables (see [`TierLimits::temp_tables_for`];
    /// `read_only` as the caller last read it).
    fn temp_tables(&self, active: bool, read_only: bool) -> Result<bool, ControlError> {
        Ok(self.limits()?.temp_tables_for(active, read_only))
    }

    /// Ends the operation with its effect on the tenant (fenced by the lease).
    async fn finish(&mut self, effect: Finish) -> Result<(), ControlError> {
        let effect = Effect::Finish(effect);
        self.finished = self.store.apply(self.op, self.worker, effect).await?;
        Ok(())
    }

    /// [`Self::finish`] with the effect `effect` resolves to, once `check` has succeeded; the
    /// registry's part is done meanwhile (see `Store::finish_after`).
    async fn finish_after(
        &mut self,
        effect: impl std::future::Future<Output = Result<Finish, ControlError>>,
        check: impl std::future::Future<Output = Result<(), ControlError>>,
    ) -> Result<(), ControlError> {
        // Boxed: with its two futures it is large enough to overflow a stack where it is held.
        let finished =
            Box::pin(self.store.finish_after(self.op, self.worker, effect, check)).await?;
        self.finished = Some(finished);
        Ok(())
    }

    /// An agency's step carrying its `kind` to its clients in one of the statuses `from` (for
    /// a resumption, only those its suspension suspended), each as an operation of its own
    /// (naming this one) with `now`. Clients already carried over are no longer in `from`, so
    /// the step can run again after a crash. A client with another operation under way, or
    /// still provisioning (it would come out active under a suspended or deleted agency),
    /// makes the step wait for it ([`ControlError::ClientsBusy`], which spends no attempt):
    /// no client is ever skipped.
    async fn cascade_to_clients(
        &self,
        kind: tenancy_core::OperationKind,
        from: &[tenancy_core::TenantStatus],
        now: crate::store::Now,
    ) -> Result<(), ControlError> {
        if self.tenant.kind != tenancy_core::TenantKind::Agency {
            return Ok(());
        }
        let filter = TenantSelector::clients_of(&self.tenant.org_id).into();
        let actor = crate::store::Actor::named("system:agency-cascade");
        let mut busy = 0;
        for client in self.store.all_tenants(&filter).await? {
            if client.status == tenancy_core::TenantStatus::Provisioning {
                busy += 1;
                continue;
            }
            let lifts_other = matches!(now, crate::store::Now::Lift(lifter)
                if !client.suspended_by.is_some_and(|by| lifter.may_lift(by)));
            if !from.contains(&client.status) || lifts_other {
                continue;
            }
            match self
                .store
                .request_operation(
                    &client.org_id,
                    kind,
                    from,
                    now,
                    crate::store::Cascade::From(self.op.id),
                    &actor,
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == tenancy_core::ErrorCode::OperationInProgress => busy += 1,
                Err(e)
                    if matches!(
                        e.code(),
                        tenancy_core::ErrorCode::InvalidState | tenancy_core::ErrorCode::Forbidden
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        if busy > 0 {
            return Err(ControlError::ClientsBusy {
                agency: self.tenant.org_id.clone(),
                count: busy,
            });
        }
        Ok(())
    }

    /// A step that is not one of this kind's: the stored operation is corrupt.
    fn unexpected(&self, step: Step) -> ControlError {
        ControlError::Corrupt(format!(
            "step {step} is not a step of a {} operation",
            self.op.kind
        ))
    }
}
