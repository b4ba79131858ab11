//! The change feed's long poll, and the listener that relays the registry's notifications.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tenancy_core::ChangeFeed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Engine, Signals};
use crate::error::ControlError;
use crate::store::{DONE_CHANNEL, OPERATIONS_CHANNEL, Store, TENANT_CHANGES_CHANNEL};

impl Engine {
    /// Changes after `after`; when there are none, waits up to `wait` for one (long poll). The
    /// answer comes as soon as the change is committed (the listener relays the trigger's
    /// notification), with a one-second poll behind it for a listener that is reconnecting. An
    /// `after` the registry never gave is answered at once with `reset` (see [`ChangeFeed`]).
    pub async fn changes(
        &self,
        after: i64,
        limit: i64,
        wait: Duration,
    ) -> Result<ChangeFeed, ControlError> {
        let last = self.store().last_change_seq().await?;
        if after > last {
            return Ok(ChangeFeed {
                changes: Vec::new(),
                last_seq: last,
                reset: true,
            });
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.inner.signals.tenant_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let changes = self.store().changes(after, limit).await?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !changes.is_empty() || remaining.is_zero() {
                let last_seq = changes.last().map_or(after, |c| c.seq);
                return Ok(ChangeFeed {
                    changes,
                    last_seq,
                    reset: false,
                });
            }
            let _ = tokio::time::timeout(remaining.min(Duration::from_secs(1)), changed).await;
        }
    }
}

/// Relays the registry's notifications until cancelled: queued operations wake workers,
/// finished ones wake waiters, tenant changes wake long polls. Missed notifications (while
/// reconnecting) are covered by everyone's polling, and everyone is woken after a reconnect.
pub(super) async fn listen(
    store: Store,
    signals: std::sync::Arc<Signals>,
    cancel: CancellationToken,
) {
    while !cancel.is_cancelled() {
        let mut listener = match PgListener::connect_with(store.pool()).await {
            Ok(listener) => listener,
            Err(e) => {
                warn!(error = %e, "notification listener cannot connect; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = cancel.cancelled() => return,
                }
            }
        };
        if let Err(e) = listener
            .listen_all([OPERATIONS_CHANNEL, DONE_CHANNEL, TENANT_CHANGES_CHANNEL])
            .await
        {
            warn!(error = %e, "LISTEN failed; retrying");
            continue;
        }
        signals.wake.notify_waiters();
        signals.tenant_changed.notify_waiters();
        loop {
            let notification = tokio::select! {
                n = listener.recv() => n,
                _ = cancel.cancelled() => return,
            };
            let notification = match notification {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "notification listener lost its connection");
                    break;
                }
            };
            match notification.channel() {
                // One worker; it wakes the next when it found something (see `worker::run`).
                OPERATIONS_CHANNEL => signals.wake.notify_one(),
                TENANT_CHANGES_CHANNEL => signals.tenant_changed.notify_waiters(),
                DONE_CHANNEL => match notification.payload().parse() {
                    Ok(id) => {
                        let _ = signals.done.send(id);
                    }
                    Err(_) => warn!(payload = notification.payload(), "malformed operation id"),
                },
                other => debug!(
                    channel = other,
                    "notification on a channel nobody listens to"
                ),
            }
        }
    }
}
