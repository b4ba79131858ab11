//! `zitadel_events`: the ZITADEL organization events received, as a queue. Recording is
//! insert-first: one statement both checks that no event at this sequence or later was recorded
//! for the organization and records this one, so concurrent deliveries cannot both pass. Each
//! organization's events are applied in sequence order.

use std::time::Duration;

use serde_json::Value;

use super::Store;
use crate::error::ControlError;

/// An event waiting to be applied.
#[derive(Debug, Clone)]
pub struct PendingOrgEvent {
    pub org_id: String,
    pub sequence: i64,
    pub event_type: String,
    /// What to apply, as the recorder described it.
    pub change: Value,
    pub attempts: i32,
}

/// How applying an event ended.
pub enum OrgEventOutcome {
    Applied,
    /// Try again after this long (the tenant was busy, the registry unavailable).
    Later(Duration, String),
    /// Never applied; the reason is kept.
    Failed(String),
}

impl Store {
    /// Records an event unless it, or a later one of the same organization, was recorded
    /// before; true when it was recorded now. With no `change` there is nothing to apply (an
    /// event type that does not concern tenants, an ignored organization).
    pub async fn record_org_event(
        &self,
        aggregate_id: &str,
        sequence: i64,
        event_type: &str,
        change: Option<&Value>,
    ) -> Result<bool, ControlError> {
        self.run("record_org_event", async {
            let recorded: Option<bool> = sqlx::query_scalar(
                "INSERT INTO zitadel_events (aggregate_id, sequence, event_type, change, state, applied_at)
                 SELECT $1, $2, $3, $4, CASE WHEN $4::jsonb IS NULL THEN 'applied' ELSE 'pending' END,
                        CASE WHEN $4::jsonb IS NULL THEN now() END
                 WHERE NOT EXISTS (SELECT 1 FROM zitadel_events
                                   WHERE aggregate_id = $1 AND sequence >= $2)
                 ON CONFLICT DO NOTHING
                 RETURNING true",
            )
            .bind(aggregate_id)
            .bind(sequence)
            .bind(event_type)
            .bind(change)
            .fetch_optional(self.pool())
            .await?;
            Ok(recorded.unwrap_or(false))
        })
        .await
    }

    /// Takes the oldest due event whose organization has no earlier one pending, applies it with
    /// `apply` (holding it, so no other replica takes it meanwhile) and records the outcome.
    /// False when there was nothing to apply.
    pub async fn apply_next_org_event<F>(&self, apply: F) -> Result<bool, ControlError>
    where
        F: AsyncFnOnce(PendingOrgEvent) -> OrgEventOutcome,
    {
        self.run("apply_next_org_event", async {
            let mut tx = self.begin().await?;
            let row: Option<(String, i64, String, Value, i32)> = sqlx::query_as(
                "SELECT aggregate_id, sequence, event_type, change, attempts FROM zitadel_events e
                 WHERE state = 'pending' AND run_after <= now()
                   AND NOT EXISTS (SELECT 1 FROM zitadel_events f
                                   WHERE f.aggregate_id = e.aggregate_id AND f.state = 'pending'
                                     AND f.sequence < e.sequence)
                 ORDER BY received_at LIMIT 1
                 FOR UPDATE SKIP LOCKED",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let Some((org_id, sequence, event_type, change, attempts)) = row else {
                return Ok(false);
            };
            let event = PendingOrgEvent {
                org_id: org_id.clone(),
                sequence,
                event_type,
                change,
                attempts,
            };
            let (state, error, delay) = match apply(event).await {
                OrgEventOutcome::Applied => ("applied", None, Duration::ZERO),
                OrgEventOutcome::Later(delay, error) => ("pending", Some(error), delay),
                OrgEventOutcome::Failed(error) => ("failed", Some(error), Duration::ZERO),
            };
            metrics::counter!("tenancy_org_events_total", "outcome" => state).increment(1);
            sqlx::query(
                "UPDATE zitadel_events SET state = $3, last_error = $4, attempts = attempts + 1,
                        run_after = now() + make_interval(secs => $5),
                        applied_at = CASE WHEN $3 = 'applied' THEN now() END
                 WHERE aggregate_id = $1 AND sequence = $2",
            )
            .bind(&org_id)
            .bind(sequence)
            .bind(state)
            .bind(error)
            .bind(delay.as_secs_f64())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }
}
