//! Operation workers: claim an operation, keep its lease alive, run its remaining steps
//! (recording progress after each), and on failure retry later with backoff or fail it for good.
//! What a step does is the `operations` module's business, not the worker's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenancy_core::{Operation, OperationKind, Step};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::activator::AdminActivator;
use crate::admins::ServerAdmins;
use crate::backups::BackupStore;
use crate::config::Config;
use crate::error::ControlError;
use crate::operations::{self, Advance, Prefetched, StepContext};
use crate::secrets::Keyring;
use crate::store::{Finished, Store};

/// What a worker needs, and nothing more of the engine.
pub(crate) struct WorkerContext {
    pub store: Store,
    pub admins: ServerAdmins,
    pub config: Arc<Config>,
    pub keyring: Keyring,
    pub backups: BackupStore,
    pub activator: Option<Arc<dyn AdminActivator>>,
    /// Woken when an operation is queued.
    pub wake: Arc<Notify>,
    #[cfg(feature = "testing")]
    pub faults: Option<Arc<dyn crate::faults::FaultInjector>>,
}

impl WorkerContext {
    /// What the steps of `op` (claimed by `worker`) on `tenant` may use.
    fn step_context<'a>(
        &'a self,
        op: &'a Operation,
        worker: &'a str,
        tenant: tenancy_core::Tenant,
    ) -> StepContext<'a> {
        StepContext {
            store: &self.store,
            admins: &self.admins,
            config: &self.config,
            keyring: &self.keyring,
            backups: &self.backups,
            activator: self.activator.as_deref(),
            op,
            worker,
            tenant,
            credentials: None,
            lease_extended_at: None,
            provision: Default::default(),
            moving: Default::default(),
            finished: None,
        }
    }

    /// The kinds this worker can run.
    fn kinds(&self) -> Vec<OperationKind> {
        OperationKind::ALL
            .iter()
            .copied()
            .filter(|kind| operations::runnable(*kind, self.activator.is_some()))
            .collect()
    }
}

/// How running an operation ended for this worker.
pub(crate) enum Outcome {
    /// Finished (with how, when it succeeded here), failed for good, or given back for a
    /// retry: the worker goes on.
    Handled(Option<Box<Finished>>),
    /// A test fault stood for the process dying: the worker stops with the lease held.
    #[cfg(feature = "testing")]
    Crashed,
}

/// Claims and runs operations until cancelled.
pub(crate) async fn run(cx: Arc<WorkerContext>, name: String, cancel: CancellationToken) {
    let engine = &cx.config.engine;
    let kinds = cx.kinds();
    loop {
        // Register for a wake-up before looking, so a notification between the two is not lost.
        let notified = cx.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if cancel.is_cancelled() {
            return;
        }
        match cx.store.claim(&name, engine.lease, &kinds).await {
            Ok(Some(op)) => {
                // One notification wakes one worker; this one passes it on, so that the
                // operations queued together are all taken by idle workers.
                cx.wake.notify_one();
                match run_claimed(&cx, &name, op, &cancel, Prefetched::default()).await {
                    Outcome::Handled(_) => {}
                    #[cfg(feature = "testing")]
                    Outcome::Crashed => return,
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

/// Runs an operation this worker has claimed, to its end or to its next retry.
pub(crate) async fn run_claimed(
    cx: &Arc<WorkerContext>,
    worker: &str,
    op: Operation,
    cancel: &CancellationToken,
    known: Prefetched,
) -> Outcome {
    let span = info_span!("operation", op_id = %op.id, org_id = %op.org_id, kind = %op.kind, attempt = op.attempts);
    async {
        if !operations::runnable(op.kind, cx.activator.is_some()) {
            // Claimed by id (a tool waiting for it): hand it back for a replica that can run it.
            warn!("this process cannot run this kind of operation: handed back");
            if let Err(e) = cx.store.release(op.id, worker).await {
                warn!(error = %e, "could not hand the operation back");
            }
            return Outcome::Handled(None);
        }
        // Aborted when this future ends or is dropped, so a lease is never renewed for nobody.
        let heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
            cx.store.clone(),
            op.id,
            worker.to_owned(),
            cx.config.engine.lease,
        )));
        let mut step = op.step;
        let result = run_steps(cx, worker, &op, &mut step, cancel, known).await;
        drop(heartbeat);
        settle(cx, worker, &op, step, result).await
    }
    .instrument(span)
    .await
}

enum Progress {
    Finished(Option<Box<Finished>>),
    Released,
}

async fn run_steps(
    cx: &WorkerContext,
    worker: &str,
    op: &Operation,
    step: &mut Step,
    cancel: &CancellationToken,
    known: Prefetched,
) -> Result<Progress, ControlError> {
    let tenant = match known.tenant {
        Some(tenant) => tenant,
        None => cx
            .store
            .tenant(&op.org_id)
            .await?
            .ok_or_else(|| ControlError::TenantNotFound(op.org_id.clone()))?,
    };
    let mut step_cx = cx.step_context(op, worker, tenant);
    step_cx.provision.claimed_spare = known.claimed_spare;
    step_cx.credentials = known.credentials;
    step_cx.lease_extended_at = known.leased_at;
    loop {
        if *step == Step::Done {
            return Ok(Progress::Finished(None));
        }
        if cancel.is_cancelled() {
            cx.store.release(op.id, worker).await?;
            return Ok(Progress::Released);
        }
        #[cfg(feature = "testing")]
        crash_if_injected(cx, op.kind, *step, crate::faults::Moment::Before)?;
        let started = Instant::now();
        let result = operations::run_step(&mut step_cx, *step)
            .instrument(info_span!("step", step = %step))
            .await;
        metrics::histogram!("tenancy_step_duration_seconds", "kind" => op.kind.as_str(), "step" => step.as_str())
            .record(started.elapsed().as_secs_f64());
        let advance = result?;
        #[cfg(feature = "testing")]
        crash_if_injected(cx, op.kind, *step, crate::faults::Moment::After)?;
        let next = op.kind.next_step(*step);
        if next == Step::Done {
            // The last step recorded the operation's end in its own transaction.
            return Ok(Progress::Finished(step_cx.finished.take().map(Box::new)));
        }
        if advance == Advance::Skip {
            *step = next;
            continue;
        }
        let advancing = Instant::now();
        cx.store
            .advance(op.id, worker, next, cx.config.engine.lease)
            .await?;
        step_cx.lease_extended_at = Some(advancing);
        *step = next;
    }
}

/// Records how the run ended: success, a retry with backoff, or a failure for good.
async fn settle(
    cx: &WorkerContext,
    worker: &str,
    op: &Operation,
    step: Step,
    result: Result<Progress, ControlError>,
) -> Outcome {
    let kind = op.kind.as_str();
    let mut finished = None;
    let recorded = match result {
        Ok(Progress::Finished(how)) => {
            metrics::counter!("tenancy_operations_total", "kind" => kind, "outcome" => "succeeded")
                .increment(1);
            info!("operation succeeded");
            finished = how;
            Ok(())
        }
        Ok(Progress::Released) => {
            info!(%step, "shutting down: operation handed back to the queue");
            Ok(())
        }
        #[cfg(feature = "testing")]
        Err(ControlError::InjectedCrash) => {
            warn!("injected crash: worker stops, leaving its lease to expire");
            return Outcome::Crashed;
        }
        Err(ControlError::LeaseLost) => {
            warn!("lease lost: another worker has taken this operation over");
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            let engine = &cx.config.engine;
            let max_attempts = operations::max_attempts(op.kind, engine);
            if e.is_waiting() {
                info!(%step, error = %message, "waiting for other operations");
                cx.store
                    .wait_later(op.id, worker, &e, engine.backoff_base * 4)
                    .await
            } else if e.is_retryable() && op.attempts < max_attempts {
                warn!(%step, error = %message, "step failed, will retry");
                metrics::counter!("tenancy_operation_retries_total", "kind" => kind).increment(1);
                cx.store
                    .retry_later(op.id, worker, &e, engine.backoff_base, engine.backoff_max)
                    .await
            } else if let Err(undo) = abandon(cx, worker, op, &e).await {
                warn!(%step, error = %message, undo_error = %undo, "operation gives up, but undoing its half-done work failed: kept queued to try again");
                cx.store
                    .retry_later(op.id, worker, &e, engine.backoff_base, engine.backoff_max)
                    .await
            } else {
                error!(%step, error = %message, "operation failed");
                metrics::counter!("tenancy_operations_total", "kind" => kind, "outcome" => "failed")
                    .increment(1);
                let failed = Operation { step, ..op.clone() };
                cx.store.fail(&failed, worker, &e).await
            }
        }
    };
    if let Err(e) = recorded {
        warn!(error = %e, "could not record the operation's outcome; its lease will expire");
    }
    Outcome::Handled(finished)
}

/// Lets the operation's kind undo what it leaves half done before it is marked failed.
async fn abandon(
    cx: &WorkerContext,
    worker: &str,
    op: &Operation,
    why: &ControlError,
) -> Result<(), ControlError> {
    let Some(tenant) = cx.store.tenant(&op.org_id).await? else {
        return Ok(());
    };
    operations::abandon(&mut cx.step_context(op, worker, tenant), why).await
}

#[cfg(feature = "testing")]
fn crash_if_injected(
    cx: &WorkerContext,
    kind: OperationKind,
    step: Step,
    moment: crate::faults::Moment,
) -> Result<(), ControlError> {
    match &cx.faults {
        Some(faults) if faults.crash_at(kind, step, moment) => Err(ControlError::InjectedCrash),
        _ => Ok(()),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the lease alive while a long step (a large clone) runs.
async fn heartbeat(store: Store, id: uuid::Uuid, worker: String, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 3).await;
        match store.renew_lease(id, &worker, lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => warn!(error = %e, "lease renewal failed"),
        }
    }
}
