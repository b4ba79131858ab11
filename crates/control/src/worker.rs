//! Operation workers: claim an operation, run its remaining steps, record progress after each.
//! A step that fails is retried later with backoff; one that keeps failing fails the operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy_core::{OperationKind, Step, TenantStatus};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::admin::AdminActivation;
use crate::engine::Inner;
use crate::error::ControlError;
use crate::faults::Moment;
use crate::pgadmin::ServerAdmin;
use crate::secrets;
use crate::store::{Finish, OperationRow, TenantRow};

pub(crate) async fn run(inner: Arc<Inner>, name: String, cancel: CancellationToken) {
    let engine = &inner.config.engine;
    loop {
        // Register for a wake-up before looking, so a notification between the two is not lost.
        let notified = inner.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if cancel.is_cancelled() {
            return;
        }
        match inner.store.claim(&name, engine.lease).await {
            Ok(Some(op)) => {
                let span = info_span!("operation", op_id = %op.id, org_id = %op.org_id, kind = %op.kind, attempt = op.attempts);
                if let Err(ControlError::InjectedCrash) = run_operation(&inner, &name, op, &cancel)
                    .instrument(span)
                    .await
                {
                    warn!("injected crash: worker stops, leaving its lease to expire");
                    return;
                }
            }
            Ok(None) => {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(engine.poll_interval) => {}
                    _ = cancel.cancelled() => return,
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot claim operations");
                tokio::select! {
                    _ = tokio::time::sleep(engine.poll_interval) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}

async fn run_operation(
    inner: &Arc<Inner>,
    worker: &str,
    mut op: OperationRow,
    cancel: &CancellationToken,
) -> Result<(), ControlError> {
    let lease = inner.config.engine.lease;
    let heartbeat = tokio::spawn(heartbeat(
        inner.clone(),
        op.clone(),
        worker.to_owned(),
        lease,
    ));
    let result = run_steps(inner, worker, &mut op, cancel).await;
    heartbeat.abort();
    let kind = op.kind.clone();
    match result {
        Ok(Progress::Finished) => {
            metrics::counter!("tenancy_operations_total", "kind" => kind, "outcome" => "succeeded")
                .increment(1);
            info!("operation succeeded");
            Ok(())
        }
        Ok(Progress::Released) => {
            info!(step = %op.step, "shutting down: operation handed back to the queue");
            Ok(())
        }
        Err(ControlError::InjectedCrash) => Err(ControlError::InjectedCrash),
        Err(ControlError::LeaseLost) => {
            warn!("lease lost: another worker has taken this operation over");
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            let engine = &inner.config.engine;
            let max_attempts = match op.kind() {
                Ok(OperationKind::ActivateAdmin) => engine.admin_activation_attempts,
                _ => engine.max_attempts,
            };
            if e.is_retryable() && op.attempts < max_attempts {
                warn!(step = %op.step, error = %message, "step failed, will retry");
                metrics::counter!("tenancy_operation_retries_total", "kind" => kind).increment(1);
                inner
                    .store
                    .retry_later(
                        op.id,
                        worker,
                        &message,
                        engine.backoff_base,
                        engine.backoff_max,
                    )
                    .await
            } else {
                error!(step = %op.step, error = %message, "operation failed");
                metrics::counter!("tenancy_operations_total", "kind" => kind, "outcome" => "failed").increment(1);
                inner.store.fail(&op, worker, &message).await
            }
        }
    }
}

enum Progress {
    Finished,
    Released,
}

async fn run_steps(
    inner: &Inner,
    worker: &str,
    op: &mut OperationRow,
    cancel: &CancellationToken,
) -> Result<Progress, ControlError> {
    let kind = op.kind()?;
    let mut step = op.step()?;
    let mut tenant = inner.store.tenant(&op.org_id()?).await?.ok_or_else(|| {
        ControlError::TenantNotFound(op.org_id().unwrap_or_else(|_| "unknown".parse().unwrap()))
    })?;
    loop {
        if step == Step::Done {
            return Ok(Progress::Finished);
        }
        if cancel.is_cancelled() {
            inner.store.release(op.id, worker).await?;
            return Ok(Progress::Released);
        }
        crash_if_injected(inner, kind, step, Moment::Before)?;
        let started = Instant::now();
        let result = execute_step(inner, worker, op, kind, step, &mut tenant)
            .instrument(info_span!("step", step = %step))
            .await;
        metrics::histogram!("tenancy_step_duration_seconds", "kind" => kind.as_str(), "step" => step.as_str())
            .record(started.elapsed().as_secs_f64());
        result?;
        crash_if_injected(inner, kind, step, Moment::After)?;
        let next = kind.next_step(step);
        if next == Step::Done {
            // The last step recorded the operation's end in its own transaction.
            return Ok(Progress::Finished);
        }
        inner
            .store
            .advance(op.id, worker, next, inner.config.engine.lease)
            .await?;
        step = next;
        op.step = step.as_str().to_owned();
    }
}

fn crash_if_injected(
    inner: &Inner,
    kind: OperationKind,
    step: Step,
    moment: Moment,
) -> Result<(), ControlError> {
    match &inner.faults {
        Some(faults) if faults.crash_at(kind, step, moment) => Err(ControlError::InjectedCrash),
        _ => Ok(()),
    }
}

async fn execute_step(
    inner: &Inner,
    worker: &str,
    op: &OperationRow,
    kind: OperationKind,
    step: Step,
    tenant: &mut TenantRow,
) -> Result<(), ControlError> {
    let org_id = tenant.org_id()?;
    let db = tenant.db_name()?;
    let role = tenant.role_name()?;
    let store = &inner.store;
    match step {
        Step::Place => {
            let server = store.place(&org_id).await?;
            tenant.server_id = Some(server.as_str().to_owned());
            Ok(())
        }
        Step::Role => {
            let limits = inner.config.tier_limits(tenant.tier()?);
            let password = secrets::tenant_password(inner.config.master_key()?, &role);
            admin(inner, tenant)
                .await?
                .ensure_role(&role, &password, limits)
                .await
        }
        Step::Database => admin(inner, tenant).await?.create_database(&db).await,
        Step::Lockdown => admin(inner, tenant).await?.lockdown(&db, &role).await,
        Step::Verify => {
            let password = secrets::tenant_password(inner.config.master_key()?, &role);
            let version = admin(inner, tenant)
                .await?
                .verify_tenant(&db, &role, &password)
                .await?;
            store.set_schema_version(&org_id, version).await
        }
        Step::Activate => store.finish(op, worker, Finish::Provisioned).await,
        Step::InviteAdmin => invite_admin(inner, tenant).await,
        Step::Block => match placed_admin(inner, tenant).await? {
            Some(admin) => admin.block(&db, &role).await,
            None => Ok(()),
        },
        Step::Unblock => admin(inner, tenant).await?.unblock(&db, &role).await,
        Step::ApplyLimits => {
            let limits = inner.config.tier_limits(tenant.tier()?);
            admin(inner, tenant)
                .await?
                .apply_limits(&role, limits)
                .await
        }
        Step::DropDatabase => match placed_admin(inner, tenant).await? {
            Some(admin) => admin.drop_database(&db).await,
            None => Ok(()),
        },
        Step::DropRole => match placed_admin(inner, tenant).await? {
            Some(admin) => admin.drop_role(&role).await,
            None => Ok(()),
        },
        Step::Finish => {
            let effect = match kind {
                OperationKind::Suspend => Finish::Status(TenantStatus::Suspended),
                OperationKind::Resume => Finish::Status(TenantStatus::Active),
                OperationKind::Retier | OperationKind::ActivateAdmin => Finish::Unchanged,
                OperationKind::Deprovision => Finish::Deleted {
                    retention: inner.config.engine.retention,
                },
                OperationKind::Purge => Finish::Purged,
                OperationKind::Provision => Finish::Provisioned,
            };
            store.finish(op, worker, effect).await
        }
        Step::Done => Ok(()),
    }
}

/// Invites the organization's first admin through the configured activator. A tenant deleted in
/// the meantime gets no admin; ZITADEL failures retry with backoff and never touch the database.
async fn invite_admin(inner: &Inner, tenant: &TenantRow) -> Result<(), ControlError> {
    if matches!(
        tenant.status()?,
        TenantStatus::Deleting | TenantStatus::Deleted
    ) {
        info!("tenant is being deleted: its admin is not invited");
        return Ok(());
    }
    let email = tenant.admin_email.as_deref().ok_or_else(|| {
        ControlError::Corrupt(format!("tenant {} names no admin e-mail", tenant.org_id))
    })?;
    let activator = inner.admin_activator.get().ok_or_else(|| {
        ControlError::Config(
            "admin activation needs ZITADEL's management API configured on this replica".into(),
        )
    })?;
    let activation = AdminActivation {
        org_id: tenant.org_id()?,
        email: email.to_owned(),
    };
    let user_id = activator.activate_admin(&activation).await?;
    info!(
        user_id,
        "organization admin invited and granted tenant_admin"
    );
    Ok(())
}

/// The admin connection of the tenant's server; the tenant must be placed.
async fn admin(inner: &Inner, tenant: &TenantRow) -> Result<ServerAdmin, ControlError> {
    placed_admin(inner, tenant).await?.ok_or_else(|| {
        ControlError::Corrupt(format!(
            "tenant {} is not placed on a server",
            tenant.org_id
        ))
    })
}

/// The admin connection of the tenant's server, or `None` when it was never placed.
async fn placed_admin(
    inner: &Inner,
    tenant: &TenantRow,
) -> Result<Option<ServerAdmin>, ControlError> {
    let Some(server) = tenant.server_id()? else {
        return Ok(None);
    };
    inner.admin(&server).await.map(Some)
}

/// Keeps the lease alive while a long step (a large clone) runs.
async fn heartbeat(inner: Arc<Inner>, op: OperationRow, worker: String, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 3).await;
        match inner.store.renew_lease(op.id, &worker, lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => warn!(error = %e, "lease renewal failed"),
        }
    }
}
