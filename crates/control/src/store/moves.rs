//! `tenant_moves`: one row per move operation, saying where from and to, how, and what it
//! measured. The tenant's `server_id` changes only at the move's switch, in one transaction
//! fenced by the operation's lease; the change feed then tells every router.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tenancy_core::{
    ErrorCode, MoveMode, Operation, OperationKind, OrgId, ServerId, Tenant, TenantMove,
    TenantStatus,
};
use uuid::Uuid;

use super::audit::{Actor, audit, tenant_snapshot};
use super::operations::{insert_operation_under, open_operation};
use super::tenants::lock_tenant;
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
    created_at: DateTime<Utc>,
}

const MOVE_COLUMNS: &str = "operation_id, org_id, source_server_id, target_server_id, mode,
    mode_requested, bytes_copied, lag_bytes_at_cutover, downtime_ms, verification,
    switched_at, retained_db_name, retained_until, aborted, created_at";

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
            created_at: row.created_at,
        })
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
    /// The server a move of `tenant` would go to when none is named: active, in its region,
    /// not its server, with room (counting moves already heading there), fewest tenants first.
    pub async fn move_target(&self, tenant: &Tenant) -> Result<ServerId, ControlError> {
        self.run("move_target", best_target(self.pool(), tenant))
            .await
    }

    /// Queues a move of the tenant, with its record, in one transaction: the tenant must still
    /// be on `source` in a movable status with no operation under way, and the target active, in
    /// the tenant's region and under capacity (its row locked, so racing moves cannot overfill
    /// it). Asking again while the same move is open returns it.
    pub async fn request_move(
        &self,
        org_id: &OrgId,
        new: NewMove<'_>,
        actor: &Actor,
    ) -> Result<Requested, ControlError> {
        self.run("request_move", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            if let Some(open) = open_operation(&mut tx, org_id).await? {
                if open.kind == OperationKind::Move {
                    return Ok(Requested::Queued(open));
                }
                return Err(ControlError::conflict(
                    ErrorCode::OperationInProgress,
                    format!(
                        "tenant {org_id} has a {} operation in progress ({})",
                        open.kind, open.id
                    ),
                ));
            }
            if !MOVABLE.contains(&tenant.status) {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!("cannot move tenant {org_id} while it is {}", tenant.status),
                ));
            }
            if tenant.server_id.as_ref() != Some(new.source) {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!("tenant {org_id} is no longer on server {}", new.source),
                ));
            }
            if new.target_chosen {
                // Placements and moves of the region queue here, so racing requests spread.
                sqlx::query(
                    "SELECT id FROM database_servers WHERE region = $1 ORDER BY id FOR UPDATE",
                )
                .bind(tenant.region.as_str())
                .execute(&mut *tx)
                .await?;
                let best = best_target(&mut *tx, &tenant).await?;
                if &best != new.target {
                    return Ok(Requested::Elsewhere(best));
                }
            }
            check_target(&mut tx, &tenant, new.target).await?;
            let op = insert_operation_under(&mut tx, org_id, OperationKind::Move, None).await?;
            sqlx::query(
                "INSERT INTO tenant_moves (operation_id, org_id, source_server_id, target_server_id,
                                           mode, mode_requested)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(op.id)
            .bind(org_id.as_str())
            .bind(new.source.as_str())
            .bind(new.target.as_str())
            .bind(new.mode.as_str())
            .bind(new.mode_requested)
            .execute(&mut *tx)
            .await?;
            audit(
                &mut tx,
                actor,
                "tenant.move",
                Some(org_id),
                Some(tenant_snapshot(&tenant)),
                Some(serde_json::json!({
                    "operation_id": op.id,
                    "source_server_id": new.source,
                    "target_server_id": new.target,
                    "mode": new.mode,
                })),
            )
            .await?;
            tx.commit().await?;
            Ok(Requested::Queued(op))
        })
        .await
    }

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

    /// Switches the tenant to the move's target, in one transaction fenced by the operation's
    /// lease: its `server_id` (the change feed tells routers), the downtime measured from the
    /// block, and the audit event. Safe to repeat: a tenant already on the target is left as is.
    pub(crate) async fn switch_move(
        &self,
        op: &Operation,
        worker: &str,
        m: &TenantMove,
    ) -> Result<(), ControlError> {
        self.run("switch_move", async {
            let mut tx = self.begin().await?;
            // The tenant's row before the operation's (see `lock_tenant`).
            let before = lock_tenant(&mut tx, &op.org_id).await?;
            let leased: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM operations WHERE id = $1 AND lease_owner = $2
                                AND state = 'running' FOR UPDATE)",
            )
            .bind(op.id)
            .bind(worker)
            .fetch_one(&mut *tx)
            .await?;
            if !leased {
                return Err(ControlError::LeaseLost);
            }
            if before.server_id.as_ref() == Some(&m.target_server_id) {
                return Ok(());
            }
            if before.server_id.as_ref() != Some(&m.source_server_id) {
                return Err(ControlError::Corrupt(format!(
                    "tenant {} is on {:?}, neither the move's source nor its target",
                    op.org_id, before.server_id
                )));
            }
            let after: Tenant = super::tenants::set_server(&mut tx, &op.org_id, &m.target_server_id).await?;
            sqlx::query(
                "UPDATE tenant_moves SET switched_at = now(),
                        downtime_ms = (extract(epoch FROM now() - coalesce(blocked_at, now())) * 1000)::bigint
                 WHERE operation_id = $1",
            )
            .bind(op.id)
            .execute(&mut *tx)
            .await?;
            audit(
                &mut tx,
                &Actor::system(),
                "tenant.moved",
                Some(&op.org_id),
                Some(tenant_snapshot(&before)),
                Some(tenant_snapshot(&after)),
            )
            .await?;
            tx.commit().await?;
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

/// What asking for a move did.
pub enum Requested {
    Queued(Operation),
    /// The chosen target is no longer the best (another move or placement took room there
    /// meanwhile): check the move against this one and ask again.
    Elsewhere(ServerId),
}

/// The best server for the tenant to move to: active, in its region, not its server, with room
/// (counting moves heading there that have not switched yet), fewest tenants first.
async fn best_target(
    executor: impl sqlx::PgExecutor<'_>,
    tenant: &Tenant,
) -> Result<ServerId, ControlError> {
    let chosen: Option<String> = sqlx::query_scalar(sql(format!(
        "SELECT s.id FROM database_servers s, LATERAL (SELECT {SERVER_LOAD} AS n) taken
         WHERE s.region = $1 AND s.state = 'active' AND s.id IS DISTINCT FROM $2
           AND taken.n < s.capacity
         ORDER BY taken.n, s.id LIMIT 1"
    )))
    .bind(tenant.region.as_str())
    .bind(tenant.server_id.as_ref().map(|s| s.as_str()))
    .fetch_optional(executor)
    .await?;
    match chosen {
        Some(id) => id.parse().map_err(ControlError::corrupt),
        None => Err(ControlError::conflict(
            ErrorCode::InvalidTarget,
            format!(
                "no other active server in region {} has room for tenant {}",
                tenant.region, tenant.org_id
            ),
        )),
    }
}

/// The tenants on server `s`, plus the moves heading there that have not switched yet: what
/// placement and capacity count for a move's target.
const SERVER_LOAD: &str = "(SELECT count(*) FROM tenants t WHERE t.server_id = s.id)
    + (SELECT count(*) FROM tenant_moves m
       JOIN operations o ON o.id = m.operation_id
       JOIN tenants t ON t.org_id = m.org_id
       WHERE m.target_server_id = s.id AND t.server_id <> s.id
         AND o.state IN ('queued', 'running'))";

/// The move's target can take the tenant: active, in its region, not its server, and under
/// capacity counting the moves already heading there (its row locked until the commit).
async fn check_target(tx: &mut Tx, tenant: &Tenant, target: &ServerId) -> Result<(), ControlError> {
    let row: Option<(String, String, i32, i64)> = sqlx::query_as(sql(format!(
        "SELECT s.region, s.state, s.capacity, {SERVER_LOAD}
         FROM database_servers s WHERE s.id = $1 FOR UPDATE OF s"
    )))
    .bind(target.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((region, state, capacity, taken)) = row else {
        return Err(ControlError::NotFound {
            what: format!("server {target}"),
        });
    };
    let refuse = |why: String| Err(ControlError::conflict(ErrorCode::InvalidTarget, why));
    if tenant.server_id.as_ref() == Some(target) {
        return refuse(format!(
            "tenant {} is on server {target} already",
            tenant.org_id
        ));
    }
    if region != tenant.region.as_str() {
        return refuse(format!(
            "server {target} is in region {region}, tenant {} in {}",
            tenant.org_id, tenant.region
        ));
    }
    if state != "active" {
        return refuse(format!("server {target} is {state}: it takes no tenants"));
    }
    if taken >= i64::from(capacity) {
        return refuse(format!(
            "server {target} is full ({taken} of {capacity} tenants, counting moves heading there)"
        ));
    }
    Ok(())
}
