//! The usage sampler's history, and what storage quotas do to a tenant: warnings at 80% and
//! 95%, and read-only past 100%. Each change of a tenant writes its audit event in the same
//! transaction; `read_only` takes a change sequence number, so routers see it at once.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::FromRow;
use tenancy_core::{OrgId, UsageSample};

use super::{Actor, Store, audit, commit_audited};
use crate::error::ControlError;

/// One tenant's figures in a sampling round.
pub struct Sample {
    pub org_id: OrgId,
    pub size_bytes: i64,
    pub connections: i64,
}

#[derive(FromRow)]
struct SampleRow {
    sampled_at: DateTime<Utc>,
    size_bytes: i64,
    connections: i64,
}

impl Store {
    /// Records a round's samples, in one statement.
    pub async fn record_samples(
        &self,
        at: DateTime<Utc>,
        samples: &[Sample],
    ) -> Result<(), ControlError> {
        self.run("record_samples", async {
            let orgs: Vec<&str> = samples.iter().map(|s| s.org_id.as_str()).collect();
            let sizes: Vec<i64> = samples.iter().map(|s| s.size_bytes).collect();
            let connections: Vec<i64> = samples.iter().map(|s| s.connections).collect();
            sqlx::query(
                "INSERT INTO usage_samples (org_id, sampled_at, size_bytes, connections)
                 SELECT s.org_id, $1, s.size_bytes, s.connections
                 FROM unnest($2::text[], $3::bigint[], $4::bigint[])
                     AS s (org_id, size_bytes, connections)
                 JOIN tenants t ON t.org_id = s.org_id
                 ON CONFLICT DO NOTHING",
            )
            .bind(at)
            .bind(&orgs)
            .bind(&sizes)
            .bind(&connections)
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }

    /// Forgets samples older than `before`.
    pub async fn prune_samples(&self, before: DateTime<Utc>) -> Result<u64, ControlError> {
        self.run("prune_samples", async {
            Ok(
                sqlx::query("DELETE FROM usage_samples WHERE sampled_at < $1")
                    .bind(before)
                    .execute(self.pool())
                    .await?
                    .rows_affected(),
            )
        })
        .await
    }

    /// A tenant's samples since `since`, oldest first (at most the latest 1,000).
    pub async fn usage_history(
        &self,
        org_id: &OrgId,
        since: DateTime<Utc>,
    ) -> Result<Vec<UsageSample>, ControlError> {
        self.run("usage_history", async {
            let mut rows = sqlx::query_as::<_, SampleRow>(
                "SELECT sampled_at, size_bytes, connections FROM usage_samples
                 WHERE org_id = $1 AND sampled_at >= $2 ORDER BY sampled_at DESC LIMIT 1000",
            )
            .bind(org_id.as_str())
            .bind(since)
            .fetch_all(self.pool())
            .await?;
            rows.reverse();
            Ok(rows
                .into_iter()
                .map(|r| UsageSample {
                    sampled_at: r.sampled_at,
                    size_bytes: r.size_bytes,
                    connections: r.connections,
                })
                .collect())
        })
        .await
    }

    /// Storage warning levels (80, 95) of tenants that have one.
    pub async fn storage_warnings(&self) -> Result<Vec<(OrgId, i16)>, ControlError> {
        self.run("storage_warnings", async {
            sqlx::query_as::<_, (String, i16)>(
                "SELECT org_id, storage_warning FROM tenants WHERE storage_warning > 0",
            )
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|(org, level)| Ok((org.parse().map_err(ControlError::corrupt)?, level)))
            .collect()
        })
        .await
    }

    /// Tenants read-only over their storage quota or past a warning level, fullest first: each
    /// with its level and whether it is read-only.
    pub async fn tenants_near_quota(
        &self,
        limit: i64,
    ) -> Result<Vec<(OrgId, i16, bool)>, ControlError> {
        self.run("tenants_near_quota", async {
            sqlx::query_as::<_, (String, i16, bool)>(
                "SELECT org_id, storage_warning, read_only FROM tenants
                 WHERE storage_warning > 0 OR read_only
                 ORDER BY read_only DESC, storage_warning DESC, org_id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|(org, level, read_only)| {
                Ok((
                    org.parse().map_err(ControlError::corrupt)?,
                    level,
                    read_only,
                ))
            })
            .collect()
        })
        .await
    }

    /// Moves a tenant's storage warning level; `crossed` are the levels it rose past (each
    /// recorded as an audit event and, with `webhook`, queued for delivery).
    pub async fn set_storage_warning(
        &self,
        org_id: &OrgId,
        level: i16,
        crossed: &[i16],
        size_bytes: i64,
        quota_bytes: i64,
        webhook: bool,
    ) -> Result<(), ControlError> {
        self.run("set_storage_warning", async {
            let mut tx = self.begin().await?;
            sqlx::query("UPDATE tenants SET storage_warning = $2 WHERE org_id = $1")
                .bind(org_id.as_str())
                .bind(level)
                .execute(&mut *tx)
                .await?;
            for crossed in crossed {
                let warning = json!({
                    "level": crossed, "size_bytes": size_bytes, "quota_bytes": quota_bytes,
                });
                audit(
                    &mut tx,
                    &Actor::named("system:usage"),
                    "tenant.storage_warning",
                    Some(org_id),
                    None,
                    Some(warning.clone()),
                )
                .await?;
                if webhook {
                    let body = json!({
                        "event": "tenant.storage_warning", "org_id": org_id,
                        "level": crossed, "size_bytes": size_bytes, "quota_bytes": quota_bytes,
                        "at": Utc::now(),
                    });
                    sqlx::query("INSERT INTO webhook_deliveries (body) VALUES ($1)")
                        .bind(body)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Webhook deliveries due now, oldest first.
    pub async fn due_deliveries(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, serde_json::Value, i32)>, ControlError> {
        self.run("due_deliveries", async {
            Ok(sqlx::query_as(
                "SELECT id, body, attempts FROM webhook_deliveries
                 WHERE delivered_at IS NULL AND next_attempt_at <= now() ORDER BY id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
        })
        .await
    }

    /// Records a delivery's outcome: delivered, or failed with when to try again (`None`: given
    /// up, kept with its error).
    pub async fn record_delivery(
        &self,
        id: i64,
        failure: Option<(&str, Option<chrono::Duration>)>,
    ) -> Result<(), ControlError> {
        self.run("record_delivery", async {
            match failure {
                None => {
                    sqlx::query(
                        "UPDATE webhook_deliveries SET delivered_at = now(),
                             attempts = attempts + 1, last_error = NULL WHERE id = $1",
                    )
                    .bind(id)
                    .execute(self.pool())
                    .await?;
                }
                Some((error, retry_in)) => {
                    sqlx::query(
                        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $2,
                             next_attempt_at = coalesce(now() + make_interval(secs => $3),
                                                        'infinity')
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(error)
                    .bind(retry_in.map(|d| d.num_milliseconds() as f64 / 1000.0))
                    .execute(self.pool())
                    .await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Marks a tenant read-only (with why) or writable again.
    pub async fn set_read_only(
        &self,
        org_id: &OrgId,
        reason: Option<&str>,
    ) -> Result<(), ControlError> {
        self.run("set_read_only", async {
            let mut tx = self.begin().await?;
            sqlx::query(
                "UPDATE tenants SET read_only = $2, read_only_reason = $3, updated_at = now()
                 WHERE org_id = $1",
            )
            .bind(org_id.as_str())
            .bind(reason.is_some())
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            let action = if reason.is_some() {
                "tenant.read_only"
            } else {
                "tenant.writable"
            };
            commit_audited(
                tx,
                &Actor::named("system:usage"),
                action,
                Some(org_id),
                None,
                Some(json!({"read_only": reason.is_some(), "reason": reason})),
            )
            .await?;
            Ok(())
        })
        .await
    }
}
