//! `zitadel_events`: the ZITADEL organization events applied, so each (organization, sequence)
//! is applied at most once and an event older than one already applied is ignored.

use super::Store;
use crate::error::ControlError;

impl Store {
    /// Whether an organization event at `sequence` (or a later one) was already applied.
    pub async fn org_event_seen(
        &self,
        aggregate_id: &str,
        sequence: i64,
    ) -> Result<bool, ControlError> {
        self.run("org_event_seen", async {
            Ok(sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM zitadel_events WHERE aggregate_id = $1 AND sequence >= $2)",
            )
            .bind(aggregate_id)
            .bind(sequence)
            .fetch_one(self.pool())
            .await?)
        })
        .await
    }

    /// Records an applied organization event.
    pub async fn record_org_event(
        &self,
        aggregate_id: &str,
        sequence: i64,
        event_type: &str,
    ) -> Result<(), ControlError> {
        self.run("record_org_event", async {
            sqlx::query(
                "INSERT INTO zitadel_events (aggregate_id, sequence, event_type) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(aggregate_id)
            .bind(sequence)
            .bind(event_type)
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }
}
