//! `operations`: the durable queue. Claimed with `FOR UPDATE SKIP LOCKED` under a lease, advanced
//! step by step (fenced by the lease), retried with backoff computed in SQL, finished together
//! with its effect on the tenant in one transaction.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use tenancy_core::{
    ErrorCode, Operation, OperationKind, OperationState, OrgId, ProvisionPath, Step, Tenant,
    TenantStatus,
};
use uuid::Uuid;

use super::tenants::{
    Lease, activate, delete_row, lock_tenant, lock_tenant_if_present, mark_deleted,
    set_credentials, set_status,
};
use super::{Actor, Maybe, Store, Tx, audit, is_unique_violation, notify, tenant_snapshot};
use crate::error::ControlError;
use crate::operations::first_step;

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

/// How a requested operation stands to an agency's clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cascade {
    /// Deleting an agency that has live clients is refused (`has_clients`).
    #[default]
    Refuse,
    /// The agency's delete takes its live clients with it (its `cascade_clients` step deletes
    /// each by an operation of its own).
    WithClients,
    /// Queued by this operation of the client's agency (its `cascade_clients` step).
    From(Uuid),
}

/// How a finished operation changes its tenant.
pub enum Finish {
    /// The tenant takes this status (keeping the reason given when the operation was asked for).
    Status(TenantStatus),
    /// The tenant's database is ready, at this schema version: it becomes active, the record
    /// of the spare it was made from (if any) goes, and when it names a first admin, the
    /// admin's activation is queued; all in the same transaction.
    Provisioned { schema_version: Option<i32> },
    /// The operation changed the servers only (the tenant row was updated when it was asked for).
    Unchanged,
    /// Deleted, its database kept for `retention`.
    Deleted { retention: Duration },
    /// Gone: the tenant row is removed (its operations stay as history).
    Purged,
    /// The role's password was set to this generation under this master key.
    Rotated { generation: i32, key_id: String },
}

/// How an operation ended, as its last step recorded it.
#[derive(Debug, Clone)]
pub struct Finished {
    pub operation: Operation,
    /// The tenant after it; `None` once its row is gone (purged).
    pub tenant: Option<Tenant>,
}

impl Store {
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
            "org_id = $1
             OR parent_operation_id IN (SELECT id FROM operations WHERE org_id = $1)",
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

    /// Queues an operation on a tenant whose status is one of `from`, moving it to `status_now`
    /// (when given, with `reason`) in the same transaction. An open operation of the same kind is
    /// returned as is; one of another kind is a conflict.
    pub async fn request_operation(
        &self,
        org_id: &OrgId,
        kind: OperationKind,
        from: &[TenantStatus],
        status_now: Option<(TenantStatus, Option<&str>)>,
        cascade: Cascade,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.run("request_operation", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            if let Some(open) = open_operation(&mut tx, org_id).await? {
                if open.kind == kind {
                    return Ok(open);
                }
                return Err(ControlError::conflict(
                    ErrorCode::OperationInProgress,
                    format!(
                        "tenant {org_id} has a {} operation in progress ({})",
                        open.kind, open.id
                    ),
                ));
            }
            if !from.contains(&tenant.status) {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!(
                        "cannot {kind} tenant {org_id} while it is {}",
                        tenant.status
                    ),
                ));
            }
            // An agency goes after its clients: deleting one with live clients is refused (unless
            // the delete takes them along), and purging one with clients at all (dropping its
            // database before finding out its row cannot go). New clients wait for this lock
            // (`check_agency`), so none can slip in between.
            let takes_clients =
                kind == OperationKind::Deprovision && cascade == Cascade::WithClients;
            if matches!(kind, OperationKind::Purge | OperationKind::Deprovision) && !takes_clients {
                let clients: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM tenants WHERE parent_org_id = $1
                     AND ($2 OR status <> 'deleted')",
                )
                .bind(org_id.as_str())
                .bind(kind == OperationKind::Purge)
                .fetch_one(&mut *tx)
                .await?;
                if clients > 0 {
                    let what = if kind == OperationKind::Purge {
                        "purge"
                    } else {
                        "delete"
                    };
                    return Err(ControlError::conflict(
                        ErrorCode::HasClients,
                        format!(
                            "tenant {org_id} is the agency of {clients} tenant(s); {what} them \
                             first{}",
                            if kind == OperationKind::Deprovision {
                                ", or delete with cascade=true to delete them with it"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
            let parent = match cascade {
                Cascade::From(parent) => Some(parent),
                Cascade::Refuse | Cascade::WithClients => None,
            };
            let op = insert_operation_under(&mut tx, org_id, kind, parent).await?;
            let after = match status_now {
                Some((status, reason)) => set_status(&mut tx, org_id, status, reason).await?,
                None => tenant.clone(),
            };
            audit(
                &mut tx,
                actor,
                &format!("tenant.{kind}"),
                Some(org_id),
                Some(tenant_snapshot(&tenant)),
                Some(tenant_snapshot(&after)),
            )
            .await?;
            tx.commit().await?;
            Ok(op)
        })
        .await
    }

    /// Queues an operation for the engine itself (reconciler, janitor), with an audit event;
    /// `None` when the tenant has one under way already.
    pub async fn enqueue_system(
        &self,
        org_id: &OrgId,
        kind: OperationKind,
    ) -> Result<Option<Operation>, ControlError> {
        self.run("enqueue_system", async {
            let mut tx = self.begin().await?;
            if open_operation(&mut tx, org_id).await?.is_some() {
                return Ok(None);
            }
            let op = insert_operation(&mut tx, org_id, kind).await?;
            audit(
                &mut tx,
                &Actor::system(),
                &format!("operation.{kind}"),
                Some(org_id),
                None,
                None,
            )
            .await?;
            tx.commit().await?;
            Ok(Some(op))
        })
        .await
    }

    /// Puts the tenant's last failed operation back in the queue with a fresh attempt budget.
    pub async fn retry_failed(
        &self,
        org_id: &OrgId,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.run("retry_failed", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            if let Some(open) = open_operation(&mut tx, org_id).await? {
                return Ok(open);
            }
            // Admin activations run in a lane of their own: the newest operation of each lane is
            // a candidate, and the newer of the failed ones is retried.
            let last: Option<Operation> = sqlx::query_as::<_, OperationRow>(sql(format!(
                "SELECT {OPERATION_COLUMNS}
                 FROM (SELECT DISTINCT ON (kind = 'activate_admin') *
                       FROM operations WHERE org_id = $1
                       ORDER BY kind = 'activate_admin', created_at DESC) newest
                 WHERE state = 'failed'
                 ORDER BY created_at DESC LIMIT 1"
            )))
            .bind(org_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(Operation::from);
            let Some(last) = last else {
                return Err(ControlError::conflict(
                    ErrorCode::NothingToRetry,
                    format!("tenant {org_id} has no failed operation to retry"),
                ));
            };
            let op: Operation = sqlx::query_as::<_, OperationRow>(sql(format!(
                "UPDATE operations SET state = 'queued', attempts = 0, run_after = now(),
                        finished_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
                        updated_at = now()
                 WHERE id = $1 RETURNING {OPERATION_COLUMNS}"
            )))
            .bind(last.id)
            .fetch_one(&mut *tx)
            .await?
            .into();
            let after = if tenant.status == TenantStatus::Failed {
                set_status(&mut tx, org_id, TenantStatus::Provisioning, None).await?
            } else {
                tenant.clone()
            };
            notify(&mut tx, OPERATIONS_CHANNEL, &op.id.to_string()).await?;
            audit(
                &mut tx,
                actor,
                "tenant.retry",
                Some(org_id),
                Some(tenant_snapshot(&tenant)),
                Some(tenant_snapshot(&after)),
            )
            .await?;
            tx.commit().await?;
            Ok(op)
        })
        .await
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

    /// Marks the operation failed for good; a failed provisioning marks the tenant failed.
    pub async fn fail(
        &self,
        op: &Operation,
        worker: &str,
        error: &ControlError,
    ) -> Result<(), ControlError> {
        self.run("fail", async {
            let mut tx = self.begin().await?;
            // The tenant's row before the operation's (see `lock_tenant`).
            let before = match op.kind {
                OperationKind::Provision => lock_tenant_if_present(&mut tx, &op.org_id).await?,
                _ => None,
            };
            let done = sqlx::query(
                "UPDATE operations SET state = 'failed', last_error = $3, last_error_code = $4,
                        lease_owner = NULL, lease_expires_at = NULL, finished_at = now(),
                        updated_at = now()
                 WHERE id = $1 AND lease_owner = $2",
            )
            .bind(op.id)
            .bind(worker)
            .bind(error.to_string())
            .bind(error.code().as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(ControlError::LeaseLost);
            }
            if let Some(before) = before {
                let reason = format!("provisioning failed at step {}: {error}", op.step);
                let after =
                    set_status(&mut tx, &op.org_id, TenantStatus::Failed, Some(&reason)).await?;
                audit(
                    &mut tx,
                    &Actor::system(),
                    "tenant.failed",
                    Some(&op.org_id),
                    Some(tenant_snapshot(&before)),
                    Some(tenant_snapshot(&after)),
                )
                .await?;
            }
            notify(&mut tx, DONE_CHANNEL, &op.id.to_string()).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Ends an operation successfully and applies its effect on the tenant, atomically; fenced
    /// by the lease.
    pub async fn finish(
        &self,
        op: &Operation,
        worker: &str,
        effect: Finish,
    ) -> Result<Finished, ControlError> {
        let effect = std::future::ready(Ok(effect));
        self.finish_after(op, worker, effect, std::future::ready(Ok(())))
            .await
    }

    /// [`Self::finish`] for an effect known only once `effect` resolves, and that holds only
    /// once `check` has succeeded (the tenant's verifying login, say). The transaction starts at
    /// once, fencing the lease and locking the tenant's and the operation's rows; the effect's
    /// statements follow when it is known; the transaction commits once `check` has succeeded
    /// too, and rolls back when either failed (the check's error is returned first). The step's
    /// last work and the registry's round trips overlap instead of adding up.
    pub async fn finish_after(
        &self,
        op: &Operation,
        worker: &str,
        effect: impl Future<Output = Result<Finish, ControlError>>,
        check: impl Future<Output = Result<(), ControlError>>,
    ) -> Result<Finished, ControlError> {
        let (written, checked) = tokio::join!(
            self.run("finish", self.write_finish(op, worker, effect)),
            check
        );
        checked?;
        let (tx, finished) = written?;
        self.run("finish_commit", async { Ok(tx.commit().await?) })
            .await?;
        // Counted once committed: a claim rolled back or repeated after a crash is not a use.
        if let Some(path) = finished.operation.provision_path {
            metrics::counter!("tenancy_warm_pool_claims_total", "path" => path.as_str())
                .increment(1);
        }
        Ok(finished)
    }

    /// The statements of [`Self::finish_after`], in the transaction returned for its commit.
    async fn write_finish(
        &self,
        op: &Operation,
        worker: &str,
        effect: impl Future<Output = Result<Finish, ControlError>>,
    ) -> Result<(Tx, Finished), ControlError> {
        let org_id = &op.org_id;
        let mut tx = self.begin().await?;
        // The tenant's row before the operation's (see `lock_tenant`); a purge taken over and
        // finished by another worker has deleted it, which the lease check below tells.
        let before = lock_tenant_if_present(&mut tx, org_id).await?;
        let mut operation: Operation = sqlx::query_as::<_, OperationRow>(sql(format!(
            "UPDATE operations SET state = 'succeeded', step = 'done', lease_owner = NULL,
                    lease_expires_at = NULL, finished_at = now(), updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'
             RETURNING {OPERATION_COLUMNS}"
        )))
        .bind(op.id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ControlError::LeaseLost)?
        .into();
        let before = before.ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))?;
        let (action, after): (String, Option<Tenant>) = match effect.await? {
            Finish::Status(status) => {
                // A status set when the operation was asked for keeps the reason given then.
                let reason = before
                    .status_reason
                    .as_deref()
                    .filter(|_| before.status == status);
                let after = set_status(&mut tx, org_id, status, reason).await?;
                (format!("tenant.{status}"), Some(after))
            }
            Finish::Unchanged => (format!("operation.{}", op.kind), Some(before.clone())),
            Finish::Provisioned { schema_version } => {
                let (after, from_spare) = activate(&mut tx, op.id, &before, schema_version).await?;
                operation.provision_path = Some(if from_spare {
                    ProvisionPath::Warm
                } else {
                    ProvisionPath::Cold
                });
                if after.admin_email.is_some() {
                    insert_operation(&mut tx, org_id, OperationKind::ActivateAdmin).await?;
                }
                ("tenant.active".to_owned(), Some(after))
            }
            Finish::Deleted { retention } => (
                "tenant.deleted".to_owned(),
                Some(mark_deleted(&mut tx, org_id, retention).await?),
            ),
            Finish::Purged => {
                delete_row(&mut tx, org_id).await?;
                ("tenant.purged".to_owned(), None)
            }
            Finish::Rotated { generation, key_id } => (
                "tenant.credentials_rotated".to_owned(),
                Some(set_credentials(&mut tx, org_id, generation, &key_id).await?),
            ),
        };
        audit(
            &mut tx,
            &Actor::system(),
            &action,
            Some(org_id),
            Some(tenant_snapshot(&before)),
            after.as_ref().map(tenant_snapshot),
        )
        .await?;
        notify(&mut tx, DONE_CHANNEL, &op.id.to_string()).await?;
        Ok((
            tx,
            Finished {
                operation,
                tenant: after,
            },
        ))
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

/// The tenant's open operation outside the admin-activation lane.
pub(super) async fn open_operation(
    tx: &mut Tx,
    org_id: &OrgId,
) -> Result<Option<Operation>, ControlError> {
    Ok(sqlx::query_as::<_, OperationRow>(sql(format!(
        "SELECT {OPERATION_COLUMNS} FROM operations
         WHERE org_id = $1 AND state IN ('queued', 'running') AND kind <> 'activate_admin'"
    )))
    .bind(org_id.as_str())
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
    insert_operation_with(tx, org_id, kind, first_step(kind), None, parent).await
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
