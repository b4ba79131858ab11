//! What runs in the background of a registry process: the notification listener, the
//! operation workers, the maintenance loop (purging tenants past retention, reconciling) and the
//! usage sampler (which enforces storage quotas).

use std::sync::Arc;

use tenancy_core::{Operation, OperationKind, ServerId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use super::Engine;
use crate::operations::Prefetched;
use crate::reconcile::Repair;
use crate::store::{Finished, LockName};
use crate::worker::{self, WorkerContext};

/// Background tasks of this process; stop them with [`Workers::shutdown`].
pub struct Workers {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// The operations requests run here (see [`Runner`]).
    runs: TaskTracker,
}

impl Workers {
    /// Stops taking work; a worker in the middle of an operation finishes its current step and
    /// hands the operation back to the queue for the next worker.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.runs.close();
        self.runs.wait().await;
    }
}

/// Runs the provisioning of a tenant whose onboarding waits for it in this process, at once, so
/// that the request waits neither for a worker to wake nor for its claim (see
/// [`Engine::onboard_and_wait`]). As many at once as the process has workers; a request beyond
/// that leaves its operation to the workers.
pub(super) struct Runner {
    context: Arc<WorkerContext>,
    /// The lease holder's name for operations run here.
    name: String,
    slots: Arc<Semaphore>,
    cancel: CancellationToken,
    runs: TaskTracker,
}

/// A free place in the [`Runner`], held until the run it is used for ends.
pub(super) struct RunSlot {
    runner: Arc<Runner>,
    permit: OwnedSemaphorePermit,
}

impl RunSlot {
    /// Who the operation's lease goes to.
    pub(super) fn worker(&self) -> &str {
        &self.runner.name
    }

    /// Runs the operation, claimed for [`Self::worker`] already, in the background; the handle
    /// ends with the run: how the operation ended when it succeeded, else `None` (handed back,
    /// or left for a retry or failed).
    pub(super) fn run(self, op: Operation, known: Prefetched) -> JoinHandle<Option<Box<Finished>>> {
        let runner = self.runner.clone();
        let span = info_span!("worker", worker = %runner.name);
        self.runner.runs.spawn(
            async move {
                let _permit = self.permit;
                match worker::run_claimed(&runner.context, &runner.name, op, &runner.cancel, known)
                    .await
                {
                    worker::Outcome::Handled(finished) => finished,
                    #[cfg(feature = "testing")]
                    worker::Outcome::Crashed => None,
                }
            }
            .instrument(span),
        )
    }
}

impl Engine {
    /// Starts this process's workers, the notification listener and the maintenance loop.
    pub fn run_workers(&self) -> Workers {
        let cancel = CancellationToken::new();
        let mut tasks = vec![self.spawn_listener(&cancel)];
        let context = Arc::new(self.worker_context());
        let runs = TaskTracker::new();
        *self.inner.runner.lock().expect("runner lock") = Some(Arc::new(Runner {
            context: context.clone(),
            name: format!("{}-request", self.inner.instance),
            slots: Arc::new(Semaphore::new(self.config().engine.workers)),
            cancel: cancel.clone(),
            runs: runs.clone(),
        }));
        for n in 0..self.config().engine.workers {
            let name = format!("{}-w{n}", self.inner.instance);
            let span = info_span!("worker", worker = %name);
            tasks.push(tokio::spawn(
                worker::run(context.clone(), name, cancel.clone()).instrument(span),
            ));
        }
        tasks.push(tokio::spawn(maintain(self.clone(), cancel.clone())));
        tasks.push(tokio::spawn(
            sample(self.clone(), cancel.clone()).instrument(info_span!("usage_sampler")),
        ));
        tasks.push(tokio::spawn(
            schedule_backups(self.clone(), cancel.clone())
                .instrument(info_span!("backup_scheduler")),
        ));
        for server in &self.config().servers {
            if server.wal_archive.is_some() {
                tasks.push(self.spawn_keeper(server.id.clone(), cancel.clone()));
            }
        }
        // Also with the pool off: the spares of an earlier size are dropped.
        tasks.push(tokio::spawn(
            refill(self.clone(), cancel.clone()).instrument(info_span!("warm_pool")),
        ));
        Workers {
            cancel,
            tasks,
            runs,
        }
    }

    /// A free place to run an operation in this process at once, if its workers run and one is
    /// free.
    pub(super) fn run_slot(&self) -> Option<RunSlot> {
        let runner = self.inner.runner.lock().expect("runner lock").clone()?;
        if runner.cancel.is_cancelled() {
            return None;
        }
        let permit = runner.slots.clone().try_acquire_owned().ok()?;
        Some(RunSlot { runner, permit })
    }

    /// Only the notification listener (tools that wait for operations, and tests).
    pub fn listen(&self) -> Workers {
        let cancel = CancellationToken::new();
        let tasks = vec![self.spawn_listener(&cancel)];
        Workers {
            cancel,
            tasks,
            runs: TaskTracker::new(),
        }
    }

    fn spawn_listener(&self, cancel: &CancellationToken) -> JoinHandle<()> {
        tokio::spawn(super::feed::listen(
            self.store().clone(),
            self.inner.signals.clone(),
            cancel.clone(),
        ))
    }

    pub(super) fn worker_context(&self) -> WorkerContext {
        WorkerContext {
            store: self.store().clone(),
            admins: self.inner.admins.clone(),
            config: self.inner.config.clone(),
            keyring: self.inner.keyring.clone(),
            backups: self.inner.backups.clone(),
            activator: self.inner.activator.get().cloned(),
            wake: self.inner.signals.wake.clone(),
            #[cfg(feature = "testing")]
            faults: self.inner.faults.get().cloned(),
        }
    }
}

/// The backup scheduler (`Engine::backup_round`): one replica per round, rounds about
/// `[backups] schedule_every` apart (a tenth either way, at random, so replicas drift apart).
async fn schedule_backups(engine: Engine, cancel: CancellationToken) {
    let every = engine.config().backups.schedule_every;
    loop {
        let jitter = rand::random_range(0.9..1.1);
        tokio::select! {
            _ = tokio::time::sleep(every.mul_f64(jitter)) => {}
            _ = cancel.cancelled() => return,
        }
        match engine.backup_round().await {
            Ok(Some(round))
                if !round.queued.is_empty() || round.expired > 0 || round.drilled.0 > 0 =>
            {
                info!(
                    queued = round.queued.len(),
                    expired = round.expired,
                    drilled = round.drilled.0,
                    damaged = round.drilled.1,
                    "backup round"
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "backup round failed; trying again next round"),
        }
    }
}

/// The usage sampler (`Engine::sample_usage`): one replica per round.
async fn sample(engine: Engine, cancel: CancellationToken) {
    let interval = engine.config().usage.sample_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return,
        }
        let lock = match engine.try_lock(&LockName::Usage).await {
            Ok(Some(lock)) => lock,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, "usage sampler lock unavailable");
                continue;
            }
        };
        if let Err(e) = engine.sample_usage().await {
            warn!(error = %e, "usage sampling failed");
        }
        lock.release().await;
    }
}

/// Activates the servers a tool asked for that this process reaches, and keeps the warm pool
/// full: a round at once, then every `refill_interval`.
async fn refill(engine: Engine, cancel: CancellationToken) {
    let interval = engine.config().warm_pool.refill_interval;
    loop {
        if let Err(e) = engine.activate_requested_servers().await {
            warn!(error = %e, "could not read the servers asked to be activated");
        }
        if let Err(e) = engine.refill_warm_pool().await {
            warn!(error = %e, "warm pool refill failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Periodic housekeeping: queue purges of tenants past retention, and reconcile with repair.
async fn maintain(engine: Engine, cancel: CancellationToken) {
    let interval = engine.config().engine.reconcile_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return,
        }
        match engine.sweep_scratch().await {
            Ok(0) => {}
            Ok(n) => info!(removed = n, "scratch instances of ended restores removed"),
            Err(e) => warn!(error = %e, "could not sweep scratch instances"),
        }
        // Changed tier figures (rolled out at start): tenants that were busy then.
        if let Err(e) = engine.roll_out_tiers().await {
            warn!(error = %e, "could not roll changed tier figures out");
        }
        let store = engine.store();
        match store.expired_tenants().await {
            Ok(expired) => {
                for org_id in expired {
                    match store.enqueue_system(&org_id, OperationKind::Purge).await {
                        Ok(Some(op)) => {
                            info!(%org_id, op_id = %op.id, "retention over, purge queued")
                        }
                        Ok(None) => {}
                        Err(e) => warn!(%org_id, error = %e, "could not queue purge"),
                    }
                }
            }
            Err(e) => warn!(error = %e, "could not list expired tenants"),
        }
        if let Err(e) = engine.drop_retained_sources().await {
            warn!(error = %e, "could not list moved tenants' source copies past retention");
        }
        if let Err(e) = engine.drop_replaced_databases().await {
            warn!(error = %e, "could not list databases restores replaced past retention");
        }
        // One replica reconciles at a time; the others would only repeat its reads.
        let lock = match engine.try_lock(&LockName::Reconcile).await {
            Ok(Some(lock)) => lock,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, "reconcile lock unavailable");
                continue;
            }
        };
        match engine
            .reconcile(Repair::Tenants)
            .instrument(info_span!("reconcile"))
            .await
        {
            Ok(findings) => {
                for f in findings {
                    warn!(kind = ?f.kind, server_id = f.server_id.as_ref().map(ServerId::as_str), name = %f.name, repaired = f.repaired, "{}", f.detail);
                }
            }
            Err(e) => warn!(error = %e, "reconcile failed"),
        }
        lock.release().await;
    }
}
