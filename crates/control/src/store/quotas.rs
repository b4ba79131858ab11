//! Product quota usage: one counter per tenant, quota and period, and the usage log of every
//! counted increment.
//!
//! An increment is one transaction: it first records itself in the log (where the idempotency
//! key is unique, so a replay finds the first, waiting for it if still in flight), then adds to
//! the counter only if the sum stays within the limit. The counter's row lock orders concurrent
//! increments and each re-reads the committed sum, so no interleaving passes the limit; a refused
//! increment rolls its log entry back.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tenancy_core::{IdempotencyKey, OrgId, QuotaName, UsageLogEntry};

use super::{Actor, Store};
use crate::error::ControlError;

/// What counting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOutcome {
    /// Counted; the period's usage is now `used`.
    Counted { used: i64 },
    /// The key had counted `amount` before; nothing was counted now.
    Replayed { amount: i64, used: i64 },
    /// It would have passed the limit; nothing was counted.
    Exceeded { used: i64 },
    /// It would have passed the agency's cap on its clients' sum, which has counted `used`;
    /// nothing was counted.
    AgencyExceeded { used: i64 },
}

/// A client's agency's cap on the sum over its clients, counted with the client's increment.
pub struct AgencyCap<'a> {
    pub agency_org_id: &'a OrgId,
    pub period_start: DateTime<Utc>,
    pub limit: i64,
}

/// One increment to count.
pub struct Increment<'a> {
    pub org_id: &'a OrgId,
    pub resource: &'a QuotaName,
    pub period_start: DateTime<Utc>,
    pub amount: i64,
    pub limit: i64,
    pub idempotency_key: Option<&'a IdempotencyKey>,
    pub actor: &'a Actor,
    /// For a client whose agency caps the resource: counted there too, in the same transaction.
    pub agency_cap: Option<AgencyCap<'a>>,
}

#[derive(FromRow)]
struct LogRow {
    id: i64,
    #[sqlx(try_from = "String")]
    resource: QuotaName,
    amount: i64,
    used_after: i64,
    idempotency_key: Option<String>,
    actor: String,
    recorded_at: DateTime<Utc>,
}

impl TryFrom<LogRow> for UsageLogEntry {
    type Error = ControlError;
    fn try_from(row: LogRow) -> Result<Self, ControlError> {
        Ok(UsageLogEntry {
            id: row.id,
            resource: row.resource,
            amount: row.amount,
            used_after: row.used_after,
            idempotency_key: row
                .idempotency_key
                .map(|k| k.parse())
                .transpose()
                .map_err(ControlError::corrupt)?,
            actor: row.actor,
            recorded_at: row.recorded_at,
        })
    }
}

impl Store {
    /// Counts an increment, all or nothing, once per idempotency key.
    pub async fn count_usage(&self, inc: Increment<'_>) -> Result<CountOutcome, ControlError> {
        self.run("count_usage", async {
            let mut tx = self.begin().await?;
            let logged: Option<i64> = sqlx::query_scalar(
                "INSERT INTO usage_log
                     (org_id, resource, period_start, amount, used_after, idempotency_key, actor)
                 VALUES ($1, $2, $3, $4, 0, $5, $6)
                 ON CONFLICT (org_id, resource, idempotency_key)
                     WHERE idempotency_key IS NOT NULL DO NOTHING
                 RETURNING id",
            )
            .bind(inc.org_id.as_str())
            .bind(inc.resource.as_str())
            .bind(inc.period_start)
            .bind(inc.amount)
            .bind(inc.idempotency_key.map(IdempotencyKey::as_str))
            .bind(&inc.actor.subject)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(log_id) = logged else {
                let amount: i64 = sqlx::query_scalar(
                    "SELECT amount FROM usage_log
                     WHERE org_id = $1 AND resource = $2 AND idempotency_key = $3",
                )
                .bind(inc.org_id.as_str())
                .bind(inc.resource.as_str())
                .bind(inc.idempotency_key.map(IdempotencyKey::as_str))
                .fetch_one(&mut *tx)
                .await?;
                let used = used_in(&mut tx, &inc).await?;
                return Ok(CountOutcome::Replayed { amount, used });
            };
            sqlx::query(
                "INSERT INTO quota_usage (org_id, resource, period_start) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(inc.org_id.as_str())
            .bind(inc.resource.as_str())
            .bind(inc.period_start)
            .execute(&mut *tx)
            .await?;
            let used: Option<i64> = sqlx::query_scalar(
                "UPDATE quota_usage SET used = used + $4
                 WHERE org_id = $1 AND resource = $2 AND period_start = $3 AND used + $4 <= $5
                 RETURNING used",
            )
            .bind(inc.org_id.as_str())
            .bind(inc.resource.as_str())
            .bind(inc.period_start)
            .bind(inc.amount)
            .bind(inc.limit)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(used) = used else {
                let used = used_in(&mut tx, &inc).await?;
                tx.rollback().await?;
                return Ok(CountOutcome::Exceeded { used });
            };
            // The agency's row is locked last by every client's increment, so concurrent
            // clients queue on it without deadlocking.
            if let Some(cap) = &inc.agency_cap {
                sqlx::query(
                    "INSERT INTO agency_quota_usage (agency_org_id, resource, period_start)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(cap.agency_org_id.as_str())
                .bind(inc.resource.as_str())
                .bind(cap.period_start)
                .execute(&mut *tx)
                .await?;
                let agency_used: Option<i64> = sqlx::query_scalar(
                    "UPDATE agency_quota_usage SET used = used + $4
                     WHERE agency_org_id = $1 AND resource = $2 AND period_start = $3
                       AND used + $4 <= $5
                     RETURNING used",
                )
                .bind(cap.agency_org_id.as_str())
                .bind(inc.resource.as_str())
                .bind(cap.period_start)
                .bind(inc.amount)
                .bind(cap.limit)
                .fetch_optional(&mut *tx)
                .await?;
                if agency_used.is_none() {
                    let used: i64 = sqlx::query_scalar(
                        "SELECT used FROM agency_quota_usage
                         WHERE agency_org_id = $1 AND resource = $2 AND period_start = $3",
                    )
                    .bind(cap.agency_org_id.as_str())
                    .bind(inc.resource.as_str())
                    .bind(cap.period_start)
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                    return Ok(CountOutcome::AgencyExceeded { used });
                }
            }
            sqlx::query("UPDATE usage_log SET used_after = $2 WHERE id = $1")
                .bind(log_id)
                .bind(used)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(CountOutcome::Counted { used })
        })
        .await
    }

    /// What a tenant's quotas have counted, by resource and period start (past periods too).
    pub async fn quota_usage(&self, org_id: &OrgId) -> Result<UsageRows, ControlError> {
        self.run("quota_usage", async {
            let rows: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(
                "SELECT resource, period_start, used FROM quota_usage WHERE org_id = $1",
            )
            .bind(org_id.as_str())
            .fetch_all(self.pool())
            .await?;
            parse_usage(rows)
        })
        .await
    }

    /// What an agency's caps on its clients' sum have counted, by resource and period start.
    pub async fn agency_quota_usage(
        &self,
        agency_org_id: &OrgId,
    ) -> Result<UsageRows, ControlError> {
        self.run("agency_quota_usage", async {
            let rows: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(
                "SELECT resource, period_start, used FROM agency_quota_usage
                 WHERE agency_org_id = $1",
            )
            .bind(agency_org_id.as_str())
            .fetch_all(self.pool())
            .await?;
            parse_usage(rows)
        })
        .await
    }

    /// A tenant's usage log, newest first; `before_id` pages backwards.
    pub async fn usage_log(
        &self,
        org_id: &OrgId,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<UsageLogEntry>, ControlError> {
        self.run("usage_log", async {
            sqlx::query_as::<_, LogRow>(
                "SELECT id, resource, amount, used_after, idempotency_key, actor, recorded_at
                 FROM usage_log
                 WHERE org_id = $1 AND ($2::bigint IS NULL OR id < $2)
                 ORDER BY id DESC LIMIT $3",
            )
            .bind(org_id.as_str())
            .bind(before_id)
            .bind(limit)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(UsageLogEntry::try_from)
            .collect()
        })
        .await
    }
}

type UsageRows = Vec<(QuotaName, DateTime<Utc>, i64)>;

fn parse_usage(rows: Vec<(String, DateTime<Utc>, i64)>) -> Result<UsageRows, ControlError> {
    rows.into_iter()
        .map(|(resource, start, used)| {
            Ok((
                resource.parse().map_err(ControlError::corrupt)?,
                start,
                used,
            ))
        })
        .collect()
}

async fn used_in(tx: &mut super::Tx, inc: &Increment<'_>) -> Result<i64, ControlError> {
    Ok(sqlx::query_scalar(
        "SELECT used FROM quota_usage WHERE org_id = $1 AND resource = $2 AND period_start = $3",
    )
    .bind(inc.org_id.as_str())
    .bind(inc.resource.as_str())
    .bind(inc.period_start)
    .fetch_optional(&mut **tx)
    .await?
    .unwrap_or(0))
}
