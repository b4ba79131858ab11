//! `tenant_moves`: one row per move operation, saying where from and to, how, and what it
//! measured. The tenant's `server_id` changes only at the move's switch, in one transaction
//! fenced by the operation's lease; the change feed then tells every router.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tenancy_core::{MoveMode, OrgId, ServerId, TenantMove, TenantStatus};
use uuid::Uuid;

use super::{Store, Tx};
use crate::error::ControlError;

/// The statuses a tenant can be moved from: a suspended tenant moves and stays suspended.
pub const MOVABLE: &[TenantStatus] = &[TenantStatus::Active, TenantStatus::Suspended];

#[derive(sqlx::FromRow)]
struct MoveRow {
    operation_id: Uuid,
    org_id: String,
    source_server_id: String,
    target_server_id: String,
    mode: String,
    mode_requested: bool,
    bytes_copied: Option<i64>,
    lag_bytes_at_cutover: Option<i64>,
    downtime_ms: Option<i64>,
    verification: Option<String>,
    switched_at: Option<DateTime<Utc>>,
    retained_db_name: Option<String>,
    retained_until: Option<DateTime<Utc>>,
    aborted: Option<String>,
    cancel_requested_at: Option<DateTime<Utc>>,
    cancelled_by: Option<String>,
    created_at: DateTime<Utc>,
}

const MOVE_COLUMNS: &str = "operation_id, org_id, source_server_id, target_server_id, mode,
    mode_requested, bytes_copied, lag_bytes_at_cutover, downtime_ms, verification,
    switched_at, retained_db_name, retained_until, aborted, cancel_requested_at, cancelled_by,
    created_at";

impl TryFrom<MoveRow> for TenantMove {
    type Error = ControlError;
    fn try_from(row: MoveRow) -> Result<Self, ControlError> {
        Ok(TenantMove {
            operation_id: row.operation_id,
            org_id: row.org_id.parse().map_err(ControlError::corrupt)?,
            source_server_id: row
                .source_server_id
                .parse()
                .map_err(ControlError::corrupt)?,
            target_server_id: row
                .target_server_id
                .parse()
                .map_err(ControlError::corrupt)?,
            mode: row.mode.parse().map_err(ControlError::corrupt)?,
            mode_requested: row.mode_requested,
            bytes_copied: row.bytes_copied,
            lag_bytes_at_cutover: row.lag_bytes_at_cutover,
            downtime_ms: row.downtime_ms,
            verification: row.verification,
            switched_at: row.switched_at,
            retained_db_name: row.retained_db_name,
            retained_until: row.retained_until,
            aborted: row.aborted,
            cancel_requested_at: row.cancel_requested_at,
            cancelled_by: row.cancelled_by,
            created_at: row.created_at,
        })
    }
}

/// A source database kept after a move whose retention has run out.
#[derive(Debug, Clone)]
pub(crate) struct RetainedSource {
    pub operation_id: Uuid,
    pub server_id: ServerId,
    pub db_name: String,
}

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

impl Store {
    /// The move an operation runs.
    pub(crate) async fn move_record(&self, operation_id: Uuid) -> Result<TenantMove, ControlError> {
        self.run("move_record", async {
            sqlx::query_as::<_, MoveRow>(sql(format!(
                "SELECT {MOVE_COLUMNS} FROM tenant_moves WHERE operation_id = $1"
            )))
            .bind(operation_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| {
                ControlError::Corrupt(format!("move operation {operation_id} has no record"))
            })?
            .try_into()
        })
        .await
    }

    /// The tenant's moves, newest first.
    pub async fn tenant_moves(
        &self,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<TenantMove>, ControlError> {
        self.run("tenant_moves", async {
            sqlx::query_as::<_, MoveRow>(sql(format!(
                "SELECT {MOVE_COLUMNS} FROM tenant_moves WHERE org_id = $1
                 ORDER BY created_at DESC LIMIT $2"
            )))
            .bind(org_id.as_str())
            .bind(limit)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(TenantMove::try_from)
            .collect()
        })
        .await
    }

    /// The moves under way, oldest first.
    pub async fn moves_in_flight(&self, limit: i64) -> Result<Vec<TenantMove>, ControlError> {
        self.run("moves_in_flight", async {
            sqlx::query_as::<_, MoveRow>(sql(format!(
                "SELECT {MOVE_COLUMNS} FROM tenant_moves
                 WHERE operation_id IN (SELECT id FROM operations
                                        WHERE kind = 'move' AND state IN ('queued', 'running'))
                 ORDER BY created_at LIMIT $1"
            )))
            .bind(limit)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(TenantMove::try_from)
            .collect()
        })
        .await
    }

    /// Whether a cancel of the move was asked for (the worker checks before each step before
    /// the switch, and while it waits for the target to catch up).
    pub(crate) async fn move_cancel_requested(
        &self,
        operation_id: Uuid,
    ) -> Result<bool, ControlError> {
        self.run("move_cancel_requested", async {
            Ok(sqlx::query_scalar(
                "SELECT cancel_requested_at IS NOT NULL FROM tenant_moves WHERE operation_id = $1",
            )
            .bind(operation_id)
            .fetch_optional(self.pool())
            .await?
            .unwrap_or(false))
        })
        .await
    }

    /// The tenant is blocked on the source from now (kept from the first time, so a resumed
    /// cutover measures its downtime from the real start).
    pub(crate) async fn move_blocked(&self, operation_id: Uuid) -> Result<(), ControlError> {
        self.update_move(
            "move_blocked",
            operation_id,
            "blocked_at = coalesce(blocked_at, now())",
        )
        .await
    }

    /// What the copy measured.
    pub(crate) async fn move_copied(
        &self,
        operation_id: Uuid,
        bytes: i64,
        lag_bytes: Option<i64>,
    ) -> Result<(), ControlError> {
        self.run("move_copied", async {
            sqlx::query(
                "UPDATE tenant_moves SET bytes_copied = $2,
                        lag_bytes_at_cutover = coalesce($3, lag_bytes_at_cutover)
                 WHERE operation_id = $1",
            )
            .bind(operation_id)
            .bind(bytes)
            .bind(lag_bytes)
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn move_verified(
        &self,
        operation_id: Uuid,
        verification: &str,
    ) -> Result<(), ControlError> {
        self.run("move_verified", async {
            sqlx::query("UPDATE tenant_moves SET verification = $2 WHERE operation_id = $1")
                .bind(operation_id)
                .bind(verification)
                .execute(self.pool())
                .await?;
            Ok(())
        })
        .await
    }

    /// The move ended with the tenant left on its source.
    pub(crate) async fn move_aborted(
        &self,
        operation_id: Uuid,
        reason: &str,
    ) -> Result<(), ControlError> {
        self.run("move_aborted", async {
            sqlx::query(
                "UPDATE tenant_moves SET aborted = coalesce(aborted, $2) WHERE operation_id = $1",
            )
            .bind(operation_id)
            .bind(reason)
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }

    /// The source database is kept as `db_name` until `retention` has passed.
    pub(crate) async fn move_retained(
        &self,
        operation_id: Uuid,
        db_name: &str,
        retention: Duration,
    ) -> Result<(), ControlError> {
        self.run("move_retained", async {
            sqlx::query(
                "UPDATE tenant_moves SET retained_db_name = $2,
                        retained_until = coalesce(retained_until, now() + make_interval(secs => $3))
                 WHERE operation_id = $1",
            )
            .bind(operation_id)
            .bind(db_name)
            .bind(retention.as_secs_f64())
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }

    /// Kept source databases whose retention has run out.
    pub(crate) async fn retained_sources_due(&self) -> Result<Vec<RetainedSource>, ControlError> {
        self.run("retained_sources_due", async {
            let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
                "SELECT operation_id, source_server_id, retained_db_name FROM tenant_moves
                 WHERE retained_db_name IS NOT NULL AND source_dropped_at IS NULL
                   AND retained_until <= now()
                 ORDER BY retained_until LIMIT 100",
            )
            .fetch_all(self.pool())
            .await?;
            rows.into_iter()
                .map(|(operation_id, server, db_name)| {
                    Ok(RetainedSource {
                        operation_id,
                        server_id: server.parse().map_err(ControlError::corrupt)?,
                        db_name,
                    })
                })
                .collect()
        })
        .await
    }

    pub(crate) async fn retained_source_dropped(
        &self,
        operation_id: Uuid,
    ) -> Result<(), ControlError> {
        self.update_move(
            "retained_source_dropped",
            operation_id,
            "source_dropped_at = now()",
        )
        .await
    }

    /// Whether the tenant has a move under way.
    pub(crate) async fn moving(&self, org_id: &OrgId) -> Result<bool, ControlError> {
        self.run("moving", async {
            Ok(sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM tenant_moves m JOIN operations o
                                ON o.id = m.operation_id
                                WHERE m.org_id = $1 AND o.state IN ('queued', 'running'))",
            )
            .bind(org_id.as_str())
            .fetch_one(self.pool())
            .await?)
        })
        .await
    }

    /// The moves under way: the replication objects they own are not orphans.
    pub(crate) async fn open_moves(&self) -> Result<Vec<Uuid>, ControlError> {
        self.run("open_moves", async {
            Ok(sqlx::query_scalar(
                "SELECT operation_id FROM tenant_moves m JOIN operations o ON o.id = m.operation_id
                 WHERE o.state IN ('queued', 'running')",
            )
            .fetch_all(self.pool())
            .await?)
        })
        .await
    }

    async fn update_move(
        &self,
        name: &'static str,
        operation_id: Uuid,
        set: &'static str,
    ) -> Result<(), ControlError> {
        self.run(name, async {
            sqlx::query(sql(format!(
                "UPDATE tenant_moves SET {set} WHERE operation_id = $1"
            )))
            .bind(operation_id)
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }
}

/// What a move request asks for, once the engine has checked it against the servers.
pub struct NewMove<'a> {
    pub source: &'a ServerId,
    pub target: &'a ServerId,
    /// The target was chosen by [`Store::move_target`], not named: it must still be the best
    /// choice when the move is recorded.
    pub target_chosen: bool,
    pub mode: MoveMode,
    pub mode_requested: bool,
    /// Servers the requesting process cannot reach: never the chosen target.
    pub avoid: &'a [ServerId],
}

/// Records the move an operation runs.
pub(super) async fn insert(
    tx: &mut Tx,
    operation_id: Uuid,
    org_id: &OrgId,
    new: &NewMove<'_>,
) -> Result<(), ControlError> {
    sqlx::query(
        "INSERT INTO tenant_moves (operation_id, org_id, source_server_id, target_server_id,
                                   mode, mode_requested)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(operation_id)
    .bind(org_id.as_str())
    .bind(new.source.as_str())
    .bind(new.target.as_str())
    .bind(new.mode.as_str())
    .bind(new.mode_requested)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Asks that a move not switched yet be abandoned (`then`: the operation that preempted it,
/// queued once it is); false when it has switched already.
pub(super) async fn request_cancel(
    tx: &mut Tx,
    operation_id: Uuid,
    by: &str,
    then: Option<tenancy_core::OperationKind>,
) -> Result<bool, ControlError> {
    Ok(sqlx::query(
        "UPDATE tenant_moves SET cancel_requested_at = coalesce(cancel_requested_at, now()),
                cancelled_by = coalesce(cancelled_by, $2),
                cancel_then = coalesce(cancel_then, $3)
         WHERE operation_id = $1 AND switched_at IS NULL",
    )
    .bind(operation_id)
    .bind(by)
    .bind(then.map(|k| k.as_str()))
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// Whether a cancel was asked for, and the operation to queue once the move is abandoned.
pub(super) async fn cancel_of(
    tx: &mut Tx,
    operation_id: Uuid,
) -> Result<Option<Option<tenancy_core::OperationKind>>, ControlError> {
    let row: Option<(Option<DateTime<Utc>>, Option<String>)> = sqlx::query_as(
        "SELECT cancel_requested_at, cancel_then FROM tenant_moves WHERE operation_id = $1",
    )
    .bind(operation_id)
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        Some((Some(_), then)) => Ok(Some(
            then.map(|k| k.parse())
                .transpose()
                .map_err(ControlError::corrupt)?,
        )),
        _ => Ok(None),
    }
}

/// Records the switch, with the downtime measured from the block.
pub(super) async fn mark_switched(tx: &mut Tx, operation_id: Uuid) -> Result<(), ControlError> {
    sqlx::query(
        "UPDATE tenant_moves SET switched_at = now(),
                downtime_ms = (extract(epoch FROM now() - coalesce(blocked_at, now())) * 1000)::bigint
         WHERE operation_id = $1",
    )
    .bind(operation_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
