//! Reading operations, and waiting for one to finish.

use std::sync::Arc;
use std::time::Duration;

use tenancy_core::{Operation, OperationState, OrgId};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Engine;
use crate::error::ControlError;
use crate::worker::{self, Outcome};

impl Engine {
    pub async fn operation(&self, id: Uuid) -> Result<Operation, ControlError> {
        self.store()
            .operation(id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("operation {id}"),
            })
    }

    /// The tenant's operations, newest first.
    pub async fn tenant_operations(
        &self,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<Operation>, ControlError> {
        self.store().tenant_operations(org_id, limit).await
    }

    /// The tenant's operations and, for an agency, those its cascades queued for its clients;
    /// newest first.
    pub async fn operations_with_cascades(
        &self,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<Operation>, ControlError> {
        self.store().operations_with_cascades(org_id, limit).await
    }

    /// The tenant's newest operation.
    pub async fn latest_operation(
        &self,
        org_id: &OrgId,
    ) -> Result<Option<Operation>, ControlError> {
        self.store().latest_operation(org_id).await
    }

    /// Waits until the operation finished (succeeded or failed) or `timeout` passed, and returns
    /// it as it is then. Woken by the registry's notifications (relayed by this engine's
    /// listener, see [`Engine::run_workers`] and [`Engine::drive_operation`]), with a polling
    /// fallback.
    pub async fn wait_operation(
        &self,
        id: Uuid,
        timeout: Duration,
    ) -> Result<Operation, ControlError> {
        let mut finished = self.inner.signals.done.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let op = self.operation(id).await?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if is_finished(&op) || remaining.is_zero() {
                return Ok(op);
            }
            let poll = remaining.min(Duration::from_millis(500));
            let _ = tokio::time::timeout(poll, wait_done(&mut finished, id)).await;
        }
    }

    /// For tools: runs this one operation in-process when no worker has it (so it completes with
    /// no registry running), and waits for it up to `timeout`. It never claims any other
    /// operation, and leaves the operation to whoever holds its lease.
    pub async fn drive_operation(
        &self,
        id: Uuid,
        timeout: Duration,
    ) -> Result<Operation, ControlError> {
        let listener = self.listen();
        let context = Arc::new(self.worker_context());
        let name = format!("{}-tool", self.inner.instance);
        let lease = self.config().engine.lease;
        let deadline = tokio::time::Instant::now() + timeout;
        // At the deadline, an operation running here is handed back at its next step boundary.
        let cancel = CancellationToken::new();
        let timer = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                tokio::time::sleep_until(deadline).await;
                cancel.cancel();
            }
        });
        let mut finished = self.inner.signals.done.subscribe();
        // A kind this process cannot run (admin activation without an identity provider) is
        // only waited for.
        let runnable = crate::operations::runnable(
            self.operation(id).await?.kind,
            context.activator.is_some(),
        );
        let result = loop {
            if runnable && !cancel.is_cancelled() {
                match self.store().claim_one(id, &name, lease).await {
                    Ok(Some(op)) => {
                        match worker::run_claimed(&context, &name, op, &cancel, Default::default())
                            .await
                        {
                            Outcome::Handled(_) => {}
                            #[cfg(feature = "testing")]
                            Outcome::Crashed => {}
                        }
                    }
                    Ok(None) => {}
                    Err(e) => break Err(e),
                }
            }
            match self.operation(id).await {
                Ok(op) if is_finished(&op) || tokio::time::Instant::now() >= deadline => {
                    break Ok(op);
                }
                Ok(_) => {}
                Err(e) => break Err(e),
            }
            // Someone else holds it, or it waits for its backoff: look again shortly.
            let poll = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .min(Duration::from_millis(500));
            let _ = tokio::time::timeout(poll, wait_done(&mut finished, id)).await;
        };
        timer.abort();
        listener.shutdown().await;
        result
    }
}

fn is_finished(op: &Operation) -> bool {
    matches!(op.state, OperationState::Succeeded | OperationState::Failed)
}

/// Returns when `id` is announced finished (or announcements were lost, so the caller looks).
async fn wait_done(finished: &mut broadcast::Receiver<Uuid>, id: Uuid) {
    loop {
        match finished.recv().await {
            Ok(done) if done == id => return,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
