//! `operations`: the durable queue. Claimed with `FOR UPDATE SKIP LOCKED` under a lease, advanced
//! step by step (fenced by the lease), retried with backoff computed in SQL, finished together
//! with its effect on the tenant in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tenancy_core::{
    ErrorCode, Lane, Operation, OperationKind, OperationState, OrgId, ProvisionPath, Step,
};
use uuid::Uuid;

use super::{Maybe, Store, Tx, is_unique_violation, notify};
use crate::error::ControlError;

/// Channel that wakes workers when an operation is queued.
pub const OPERATIONS_CHANNEL: &str = "tenancy_operations";
/// Channel that carries the id of every operation that finished (succeeded or failed).
pub const DONE_CHANNEL: &str = "tenancy_operation_done";

/// The one column list of an operation read.
const OPERATION_COLUMNS: &str = "id, org_id, kind, state, step, attempts, last_error, \
    last_error_code, created_at, finished_at, parent_operation_id, provision_path";

#[derive(FromRow)]
struct OperationRow {
    id: Uuid,
    #[sqlx(try_from = "String")]
    org_id: OrgId,
    #[sqlx(try_from = "String")]
    kind: OperationKind,
    #[sqlx(try_from = "String")]
    state: OperationState,
    #[sqlx(try_from = "String")]
    step: Step,
    attempts: i32,
    last_error: Option<String>,
    #[sqlx(try_from = "Option<String>")]
    last_error_code: Maybe<ErrorCode>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    parent_operation_id: Option<Uuid>,
    #[sqlx(try_from = "Option<String>")]
    provision_path: Maybe<ProvisionPath>,
}

impl From<OperationRow> for Operation {
    fn from(row: OperationRow) -> Self {
        Operation {
            id: row.id,
            org_id: row.org_id,
            kind: row.kind,
            state: row.state,
            step: row.step,
            attempts: row.attempts,
            last_error: row.last_error,
            last_error_code: row.last_error_code.0,
            created_at: row.created_at,
            finished_at: row.finished_at,
            parent_operation_id: row.parent_operation_id,
            provision_path: row.provision_path.0,
        }
    }
}

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

/// A page of operations across tenants, newest first: `before` is the last id of the previous
/// page.
#[derive(Debug, Clone, Default)]
pub struct OperationFilter {
    /// In any of these states (all when empty).
    pub states: Vec<OperationState>,
    pub kind: Option<OperationKind>,
    /// Only those tried more than once.
    pub retried: bool,
    pub before: Option<Uuid>,
    pub limit: i64,
}

impl Store {
    /// Operations across tenants matching the filter, newest first.
    pub async fn operations(
        &self,
        filter: &OperationFilter,
    ) -> Result<Vec<Operation>, ControlError> {
        self.run("operations", async {
            let rows = sqlx::query_as::<_, OperationRow>(sql(format!(
                "SELECT {OPERATION_COLUMNS} FROM operations
                 WHERE (cardinality($1::text[]) = 0 OR state = ANY($1))
                   AND ($2::text IS NULL OR kind = $2)
                   AND (NOT $3 OR attempts > 1)
                   AND ($4::uuid IS NULL OR (created_at, id) <
                        (SELECT created_at, id FROM operations WHERE id = $4))
                 ORDER BY created_at DESC, id DESC LIMIT $5"
            )))
            .bind(filter.states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
            .bind(filter.kind.map(|k| k.as_str()))
            .bind(filter.retried)
            .bind(filter.before)
            .bind(filter.limit)
            .fetch_all(self.pool())
            .await?;
            Ok(rows.into_iter().map(Operation::from).collect())
        })
        .await
    }

    pub async fn operation(&self, id: Uuid) -> Result<Option<Operation>, ControlError> {
        self.run("operation", async {
            Ok(sqlx::query_as::<_, OperationRow>(sql(format!(
                "SELECT {OPERATION_COLUMNS} FROM operations WHERE id = $1"
            )))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(Operation::from))
        })
        .await
    }

    /// The tenant's operations and, for an agency, those its cascades queued for its clients;
    /// newest first.
    pub async fn operations_with_cascades(
        &self,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<Operation>, ControlError> {
        self.operations_where(
            "operations_with_cascades",
            // Written as one id list, not `org_id = $1 OR parent_operation_id IN (...)`,
            // which the planner can answer only by reading every operation.
            "id IN (SELECT id FROM operations WHERE org_id = $1
                    UNION ALL
                    SELECT c.id FROM operations p
                    JOIN operations c ON c.parent_operation_id = p.id
                    WHERE p.org_id = $1)",
            org_id,
            limit,
        )
        .await
    }

    /// The tenant's operations, newest first.
    pub async fn tenant_operations(
        &self,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<Operation>, ControlError> {
        self.operations_where("tenant_operations", "org_id = $1", org_id, limit)
            .await
    }

    /// Operations matching `filter` (a fixed condition on `$1`, the organization), newest first.
    /// Each caller's condition stays its own statement, so the plain one keeps its index plan.
    async fn operations_where(
        &self,
        name: &'static str,
        filter: &'static str,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<Operation>, ControlError> {
        self.run(name, async {
            let rows = sqlx::query_as::<_, OperationRow>(sql(format!(
                "SELECT {OPERATION_COLUMNS} FROM operations WHERE {filter}
                 ORDER BY created_at DESC LIMIT $2"
            )))
            .bind(org_id.as_str())
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
            Ok(rows.into_iter().map(Operation::from).collect())
        })
        .await
    }

    /// The tenant's newest operation.
    pub async fn latest_operation(
        &self,
        org_id: &OrgId,
    ) -> Result<Option<Operation>, ControlError> {
        Ok(self.tenant_operations(org_id, 1).await?.into_iter().next())
    }

    /// Claims the next runnable operation of one of `kinds`: queued and due, or running with an
    /// expired lease (its worker died). `SKIP LOCKED` lets any number of workers claim side by
    /// side; a worker never takes a kind it cannot run.
    pub async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        kinds: &[OperationKind],
    ) -> Result<Option<Operation>, ControlError> {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        self.run("claim", async {
            Ok(sqlx::query_as::<_, OperationRow>(sql(format!(
                "UPDATE operations SET state = 'running', lease_owner = $1,
                        lease_expires_at = now() + make_interval(secs => $2),
                        attempts = attempts + 1, updated_at = now()
                 WHERE id = (
                     SELECT id FROM operations
                     WHERE ((state = 'queued' AND run_after <= now())
                            OR (state = 'running' AND lease_expires_at < now()))
                       AND kind = ANY($3)
                     ORDER BY run_after
                     LIMIT 1
                     FOR UPDATE SKIP LOCKED)
                 RETURNING {OPERATION_COLUMNS}"
            )))
            .bind(worker)
            .bind(lease.as_secs_f64())
            .bind(&kinds)
            .fetch_optional(self.pool())
            .await?
            .map(Operation::from))
        })
        .await
    }

    /// Claims one given operation if it is runnable now (a tool waiting for its own operation).
    pub async fn claim_one(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Operation>, ControlError> {
        self.run("claim_one", async {
            Ok(sqlx::query_as::<_, OperationRow>(sql(format!(
                "UPDATE operations SET state = 'running', lease_owner = $2,
                        lease_expires_at = now() + make_interval(secs => $3),
                        attempts = attempts + 1, updated_at = now()
                 WHERE id = (
                     SELECT id FROM operations
                     WHERE id = $1 AND ((state = 'queued' AND run_after <= now())
                                        OR (state = 'running' AND lease_expires_at < now()))
                     FOR UPDATE SKIP LOCKED)
                 RETURNING {OPERATION_COLUMNS}"
            )))
            .bind(id)
            .bind(worker)
            .bind(lease.as_secs_f64())
            .fetch_optional(self.pool())
            .await?
            .map(Operation::from))
        })
        .await
    }

    /// Extends our lease; false when another worker has taken the operation over.
    pub async fn renew_lease(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, ControlError> {
        self.run("renew_lease", async {
            let done = sqlx::query(relaxed_commit!(
                "UPDATE operations SET lease_expires_at = now() + make_interval(secs => $3)
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'"
            ))
            .bind(id)
            .bind(worker)
            .bind(lease.as_secs_f64())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// Records that `step` is the next one to run; fenced by the lease.
    pub async fn advance(
        &self,
        id: Uuid,
        worker: &str,
        step: Step,
        lease: Duration,
    ) -> Result<(), ControlError> {
        self.run("advance", async {
            let done = sqlx::query(relaxed_commit!(
                "UPDATE operations SET step = $3, updated_at = now(),
                        lease_expires_at = now() + make_interval(secs => $4)
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'"
            ))
            .bind(id)
            .bind(worker)
            .bind(step.as_str())
            .bind(lease.as_secs_f64())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(ControlError::LeaseLost)
            }
        })
        .await
    }

    /// Hands a claimed operation back untouched (shutdown, or a kind this worker cannot run):
    /// the attempt does not count.
    pub async fn release(&self, id: Uuid, worker: &str) -> Result<(), ControlError> {
        self.run("release", async {
            let mut tx = self.begin().await?;
            sqlx::query(
                "UPDATE operations SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                        attempts = greatest(attempts - 1, 0), run_after = now(), updated_at = now()
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            )
            .bind(id)
            .bind(worker)
            .execute(&mut *tx)
            .await?;
            notify(&mut tx, OPERATIONS_CHANNEL, &id.to_string()).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Gives the operation back to the queue after a retryable failure, with exponential backoff
    /// (computed in SQL from the attempt count, with jitter).
    pub async fn retry_later(
        &self,
        id: Uuid,
        worker: &str,
        error: &ControlError,
        base: Duration,
        max: Duration,
    ) -> Result<(), ControlError> {
        self.run("retry_later", async {
            sqlx::query(
                "UPDATE operations SET state = 'queued', last_error = $3, last_error_code = $6,
                        lease_owner = NULL,
                        lease_expires_at = NULL, updated_at = now(),
                        run_after = now() + make_interval(secs =>
                            least($4 * power(2, greatest(attempts - 1, 0)), $5) * (0.75 + random() / 2))
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind(worker)
            .bind(error.to_string())
            .bind(base.as_secs_f64())
            .bind(max.as_secs_f64())
            .bind(error.code().as_str())
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }

    /// Gives the operation back to the queue while what it waits for (another operation) goes
    /// on: tried again after `delay`, and the attempt does not count, so waiting never fails
    /// it.
    pub async fn wait_later(
        &self,
        id: Uuid,
        worker: &str,
        error: &ControlError,
        delay: Duration,
    ) -> Result<(), ControlError> {
        self.run("wait_later", async {
            sqlx::query(
                "UPDATE operations SET state = 'queued', last_error = $3, last_error_code = $5,
                        lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
                        attempts = greatest(attempts - 1, 0),
                        run_after = now() + make_interval(secs => $4 * (0.75 + random() / 2))
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(id)
            .bind(worker)
            .bind(error.to_string())
            .bind(delay.as_secs_f64())
            .bind(error.code().as_str())
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }

    /// Operations per kind and state, for metrics.
    pub async fn operations_by_state(
        &self,
    ) -> Result<Vec<(OperationKind, OperationState, i64)>, ControlError> {
        self.run("operations_by_state", async {
            let rows: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT kind, state, count(*) FROM operations GROUP BY kind, state")
                    .fetch_all(self.pool())
                    .await?;
            rows.into_iter()
                .map(|(kind, state, n)| {
                    Ok((
                        kind.parse().map_err(ControlError::corrupt)?,
                        state.parse().map_err(ControlError::corrupt)?,
                        n,
                    ))
                })
                .collect()
        })
        .await
    }
}

/// An operation's lease: who holds it, and for how long from now.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub worker: &'a str,
    pub length: std::time::Duration,
}

/// The tenant's failed operation to retry: the newest operation of each lane is a candidate,
/// and the newer of the failed ones is retried.
pub(super) async fn last_failed(
    tx: &mut Tx,
    org_id: &OrgId,
) -> Result<Option<Operation>, ControlError> {
    Ok(sqlx::query_as::<_, OperationRow>(sql(format!(
        "SELECT {OPERATION_COLUMNS}
         FROM (SELECT DISTINCT ON (kind = ANY($2)) *
               FROM operations WHERE org_id = $1
               ORDER BY kind = ANY($2), created_at DESC) newest
         WHERE state = 'failed'
         ORDER BY created_at DESC LIMIT 1"
    )))
    .bind(org_id.as_str())
    .bind(OperationKind::in_lane(Lane::Identity))
    .bind(OperationKind::in_lane(Lane::Backup))
    .fetch_optional(&mut **tx)
    .await?
    .map(Operation::from))
}

/// Puts an operation back in the queue with a fresh attempt budget, and wakes the workers.
pub(super) async fn requeue(tx: &mut Tx, id: Uuid) -> Result<Operation, ControlError> {
    let op: Operation = sqlx::query_as::<_, OperationRow>(sql(format!(
        "UPDATE operations SET state = 'queued', attempts = 0, run_after = now(),
                finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
                updated_at = now()
         WHERE id = $1 RETURNING {OPERATION_COLUMNS}"
    )))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?
    .into();
    notify(tx, OPERATIONS_CHANNEL, &op.id.to_string()).await?;
    Ok(op)
}

/// The lease fence of a change an operation makes: its row locked, and
/// [`ControlError::LeaseLost`] unless `worker` still holds it running.
pub(super) async fn fence(tx: &mut Tx, id: Uuid, worker: &str) -> Result<(), ControlError> {
    let leased: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM operations WHERE id = $1 AND lease_owner = $2
                        AND state = 'running' FOR UPDATE)",
    )
    .bind(id)
    .bind(worker)
    .fetch_one(&mut **tx)
    .await?;
    leased.then_some(()).ok_or(ControlError::LeaseLost)
}

/// Ends an operation succeeded, fenced by its lease like [`fence`] in the same statement.
pub(super) async fn end_succeeded(
    tx: &mut Tx,
    id: Uuid,
    worker: &str,
) -> Result<Operation, ControlError> {
    Ok(sqlx::query_as::<_, OperationRow>(sql(format!(
        "UPDATE operations SET state = 'succeeded', step = 'done', lease_owner = NULL,
                lease_expires_at = NULL, finished_at = now(), updated_at = now()
         WHERE id = $1 AND lease_owner = $2 AND state = 'running'
         RETURNING {OPERATION_COLUMNS}"
    )))
    .bind(id)
    .bind(worker)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(ControlError::LeaseLost)?
    .into())
}

/// Ends an operation failed for good, with its error; fenced by the lease.
pub(super) async fn end_failed(
    tx: &mut Tx,
    id: Uuid,
    worker: &str,
    error: &ControlError,
) -> Result<(), ControlError> {
    let done = sqlx::query(
        "UPDATE operations SET state = 'failed', last_error = $3, last_error_code = $4,
                lease_owner = NULL, lease_expires_at = NULL, finished_at = now(),
                updated_at = now()
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(worker)
    .bind(error.to_string())
    .bind(error.code().as_str())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ControlError::LeaseLost);
    }
    Ok(())
}

/// The tenant's open operation in its own lane (see [`Lane`]).
pub(super) async fn open_operation(
    tx: &mut Tx,
    org_id: &OrgId,
) -> Result<Option<Operation>, ControlError> {
    open_operation_in(tx, org_id, Lane::Tenant).await
}

/// The tenant's open operation in `lane`.
pub(super) async fn open_operation_in(
    tx: &mut Tx,
    org_id: &OrgId,
    lane: Lane,
) -> Result<Option<Operation>, ControlError> {
    Ok(sqlx::query_as::<_, OperationRow>(sql(format!(
        "SELECT {OPERATION_COLUMNS} FROM operations
         WHERE org_id = $1 AND state IN ('queued', 'running') AND kind = ANY($2)"
    )))
    .bind(org_id.as_str())
    .bind(OperationKind::in_lane(lane))
    .fetch_optional(&mut **tx)
    .await?
    .map(Operation::from))
}

/// Queues an operation at its kind's first step and wakes the workers.
pub(super) async fn insert_operation(
    tx: &mut Tx,
    org_id: &OrgId,
    kind: OperationKind,
) -> Result<Operation, ControlError> {
    insert_operation_under(tx, org_id, kind, None).await
}

/// Queues an operation, naming the agency operation that cascaded it, if any.
pub(super) async fn insert_operation_under(
    tx: &mut Tx,
    org_id: &OrgId,
    kind: OperationKind,
    parent: Option<Uuid>,
) -> Result<Operation, ControlError> {
    insert_operation_with(tx, org_id, kind, kind.first_step(), None, parent).await
}

/// Inserts an operation starting at `step`: queued (and the workers woken), or, with `runner`,
/// already running under its lease (its first attempt).
pub(super) async fn insert_operation_at(
    tx: &mut Tx,
    org_id: &OrgId,
    kind: OperationKind,
    step: Step,
    runner: Option<Lease<'_>>,
) -> Result<Operation, ControlError> {
    insert_operation_with(tx, org_id, kind, step, runner, None).await
}

async fn insert_operation_with(
    tx: &mut Tx,
    org_id: &OrgId,
    kind: OperationKind,
    step: Step,
    runner: Option<Lease<'_>>,
    parent: Option<Uuid>,
) -> Result<Operation, ControlError> {
    let op: Operation = sqlx::query_as::<_, OperationRow>(sql(format!(
        "INSERT INTO operations (id, org_id, kind, state, step, parent_operation_id, lease_owner,
                                 lease_expires_at, attempts)
         VALUES ($1, $2, $3, CASE WHEN $6::text IS NULL THEN 'queued' ELSE 'running' END, $4, $5,
                 $6, now() + make_interval(secs => $7), CASE WHEN $6::text IS NULL THEN 0 ELSE 1 END)
         RETURNING {OPERATION_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(org_id.as_str())
    .bind(kind.as_str())
    .bind(step.as_str())
    .bind(parent)
    .bind(runner.map(|lease| lease.worker))
    .bind(runner.map(|lease| lease.length.as_secs_f64()))
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        let e = ControlError::from(e);
        if is_unique_violation(&e, "operations_one_open_per_tenant")
            || is_unique_violation(&e, "operations_one_open_activation")
        {
            ControlError::conflict(
                ErrorCode::OperationInProgress,
                format!("tenant {org_id} has an operation in progress"),
            )
        } else {
            e
        }
    })?
    .into();
    if runner.is_none() {
        notify(tx, OPERATIONS_CHANNEL, &op.id.to_string()).await?;
    }
    Ok(op)
}
