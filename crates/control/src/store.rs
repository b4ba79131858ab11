//! The registry database: tenants, operations, servers, audit events. Every function is one
//! statement or one transaction; anything that changes a tenant bumps its change sequence and
//! writes its audit event in the same transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, FromRow, PgConnection, Postgres, Transaction};
use tenancy_core::{
    CreateTenant, DbName, Operation, OperationKind, OperationState, OrgId, Region, RoleName,
    ServerId, ServerState, Slug, Step, Tenant, TenantName, TenantStatus, Tier,
};
use tracing::instrument;
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::error::{ControlError, sqlstate};

/// Channel that wakes workers when an operation is queued.
pub const OPERATIONS_CHANNEL: &str = "tenancy_operations";
/// Channel that carries the id of every operation that finished (succeeded or failed).
pub const DONE_CHANNEL: &str = "tenancy_operation_done";
/// Channel the registry's trigger notifies on every tenant change (payload: the change sequence).
pub const TENANT_CHANGES_CHANNEL: &str = "tenancy_tenant_changes";

/// Who asked for a change, recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub org_id: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    /// The control plane acting on its own (workers, reconciler).
    pub fn system() -> Self {
        Self {
            subject: "system:engine".into(),
            org_id: None,
            request_id: None,
        }
    }

    pub fn named(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            org_id: None,
            request_id: None,
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct TenantRow {
    pub org_id: String,
    pub name: String,
    pub slug: String,
    pub db_name: String,
    pub role_name: String,
    pub server_id: Option<String>,
    pub region: String,
    pub tier: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub parent_org_id: Option<String>,
    pub admin_email: Option<String>,
    pub schema_version: Option<i32>,
    pub last_migration_error: Option<String>,
    pub request: Value,
    pub change_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub purge_after: Option<DateTime<Utc>>,
}

fn corrupt(e: impl std::fmt::Display) -> ControlError {
    ControlError::Corrupt(e.to_string())
}

impl TenantRow {
    pub fn org_id(&self) -> Result<OrgId, ControlError> {
        self.org_id.parse().map_err(corrupt)
    }
    pub fn db_name(&self) -> Result<DbName, ControlError> {
        self.db_name.parse().map_err(corrupt)
    }
    pub fn role_name(&self) -> Result<RoleName, ControlError> {
        self.role_name.parse().map_err(corrupt)
    }
    pub fn server_id(&self) -> Result<Option<ServerId>, ControlError> {
        self.server_id
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(corrupt)
    }
    pub fn status(&self) -> Result<TenantStatus, ControlError> {
        self.status.parse().map_err(corrupt)
    }
    pub fn tier(&self) -> Result<Tier, ControlError> {
        self.tier.parse().map_err(corrupt)
    }

    pub fn to_tenant(&self) -> Result<Tenant, ControlError> {
        Ok(Tenant {
            org_id: self.org_id()?,
            name: self.name.parse::<TenantName>().map_err(corrupt)?,
            slug: self.slug.parse::<Slug>().map_err(corrupt)?,
            db_name: self.db_name()?,
            server_id: self.server_id()?,
            region: self.region.parse::<Region>().map_err(corrupt)?,
            tier: self.tier()?,
            status: self.status()?,
            status_reason: self.status_reason.clone(),
            parent_org_id: self
                .parent_org_id
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(corrupt)?,
            schema_version: self.schema_version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct OperationRow {
    pub id: Uuid,
    pub org_id: String,
    pub kind: String,
    pub state: String,
    pub step: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl OperationRow {
    pub fn kind(&self) -> Result<OperationKind, ControlError> {
        self.kind.parse().map_err(corrupt)
    }
    pub fn step(&self) -> Result<Step, ControlError> {
        self.step.parse().map_err(corrupt)
    }
    pub fn org_id(&self) -> Result<OrgId, ControlError> {
        self.org_id.parse().map_err(corrupt)
    }

    pub fn to_operation(&self) -> Result<Operation, ControlError> {
        Ok(Operation {
            id: self.id,
            org_id: self.org_id()?,
            kind: self.kind()?,
            state: self.state.parse::<OperationState>().map_err(corrupt)?,
            step: self.step()?,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            created_at: self.created_at,
            finished_at: self.finished_at,
        })
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct ServerRow {
    pub id: String,
    pub region: String,
    pub host: String,
    pub port: i32,
    pub admin_user: String,
    pub password_env: Option<String>,
    pub admin_database: String,
    pub capacity: i32,
    pub state: String,
    pub template_version: Option<i32>,
    pub tenants: i64,
}

impl ServerRow {
    /// The row as a server configuration, without its password.
    pub fn to_config(&self) -> Result<ServerConfig, ControlError> {
        Ok(ServerConfig {
            id: self.id.parse().map_err(corrupt)?,
            region: self.region.parse().map_err(corrupt)?,
            host: self.host.clone(),
            port: u16::try_from(self.port).map_err(corrupt)?,
            admin_user: self.admin_user.clone(),
            password_env: self.password_env.clone(),
            password: None,
            admin_database: self.admin_database.clone(),
            capacity: u32::try_from(self.capacity).map_err(corrupt)?,
            state: self.state.parse().map_err(corrupt)?,
        })
    }
}

/// A new tenant row with its first operation, ready to insert.
pub struct NewTenant<'a> {
    pub org_id: &'a OrgId,
    pub request: &'a CreateTenant,
    pub slug: &'a Slug,
    pub region: &'a Region,
    pub tier: Tier,
    /// Whether the slug was given by the caller (a collision is then a conflict) or derived.
    pub explicit_slug: bool,
}

/// What `create_tenant` did.
pub enum Created {
    /// A new tenant and its provisioning operation.
    New(TenantRow, OperationRow),
    /// The same request was made before: the tenant as it is.
    Existing(TenantRow),
}

const TENANT_COLUMNS: &str = "org_id, name, slug, db_name, role_name, server_id, region, tier, status, \
    status_reason, parent_org_id, admin_email, schema_version, last_migration_error, request, \
    change_seq, created_at, updated_at, deleted_at, purge_after";

/// Handle on the registry database.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ControlError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// Takes the registry-wide lock `name` if no one holds it (a session advisory lock on a
    /// connection of its own): at most one holder across every replica and tool. Released when
    /// the guard is dropped, or when its holder dies.
    pub async fn try_lock(&self, name: &str) -> Result<Option<RegistryLock>, ControlError> {
        let mut connection = PgConnection::connect_with(&self.pool.connect_options()).await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(name)
            .fetch_one(&mut connection)
            .await?;
        Ok(locked.then_some(RegistryLock { connection }))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    // ----- servers -----

    /// Records the configured servers; a server's state is only set when it is new.
    #[instrument(skip_all)]
    pub async fn sync_servers(&self, servers: &[ServerConfig]) -> Result<(), ControlError> {
        for s in servers {
            sqlx::query(
                "INSERT INTO database_servers (id, region, host, port, admin_user, capacity, state, password_env, admin_database)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET region = EXCLUDED.region, host = EXCLUDED.host,
                   port = EXCLUDED.port, admin_user = EXCLUDED.admin_user, capacity = EXCLUDED.capacity,
                   password_env = EXCLUDED.password_env, admin_database = EXCLUDED.admin_database,
                   updated_at = now()",
            )
            .bind(s.id.as_str())
            .bind(s.region.as_str())
            .bind(&s.host)
            .bind(i32::from(s.port))
            .bind(&s.admin_user)
            .bind(i32::try_from(s.capacity).unwrap_or(i32::MAX))
            .bind(s.state.as_str())
            .bind(s.password_env.as_deref())
            .bind(&s.admin_database)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    pub async fn list_servers(&self) -> Result<Vec<ServerRow>, ControlError> {
        Ok(sqlx::query_as::<_, ServerRow>(
            "SELECT s.id, s.region, s.host, s.port, s.admin_user, s.password_env, s.admin_database,
                    s.capacity, s.state, s.template_version,
                    (SELECT count(*) FROM tenants t WHERE t.server_id = s.id) AS tenants
             FROM database_servers s ORDER BY s.id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    #[instrument(skip(self))]
    pub async fn set_server_state(
        &self,
        id: &ServerId,
        state: ServerState,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT state FROM database_servers WHERE id = $1 FOR UPDATE")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(before) = before else {
            return Err(ControlError::NotFound {
                what: format!("server {id}"),
            });
        };
        sqlx::query("UPDATE database_servers SET state = $2, updated_at = now() WHERE id = $1")
            .bind(id.as_str())
            .bind(state.as_str())
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            actor,
            "server.set_state",
            None,
            Some(serde_json::json!({"server_id": id, "state": before})),
            Some(serde_json::json!({"server_id": id, "state": state})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_template_version(
        &self,
        id: &ServerId,
        version: Option<i32>,
    ) -> Result<(), ControlError> {
        sqlx::query(
            "UPDATE database_servers SET template_version = $2, updated_at = now() WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ----- tenants -----

    pub async fn tenant(&self, org_id: &OrgId) -> Result<Option<TenantRow>, ControlError> {
        Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE org_id = $1"
        )))
        .bind(org_id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRow>, ControlError> {
        Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY org_id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Inserts a tenant and its provisioning operation, or returns the existing tenant when the
    /// same request was made before. A derived slug that is taken gets a numeric suffix; an
    /// explicit one is a conflict.
    #[instrument(skip_all, fields(org_id = %new.org_id))]
    pub async fn create_tenant(
        &self,
        new: NewTenant<'_>,
        actor: &Actor,
    ) -> Result<Created, ControlError> {
        // A concurrent insert of the same slug aborts our transaction; start over with the next one.
        for _ in 0..8 {
            match self.try_create_tenant(&new, actor).await {
                // The same organization inserted concurrently: the next round finds it.
                Err(ControlError::Registry(e)) if is_unique_violation(&e, "tenants_pkey") => {
                    continue;
                }
                Err(ControlError::Registry(e))
                    if is_unique_violation(&e, "tenants_slug_key")
                        || is_unique_violation(&e, "tenants_db_name_key")
                        || is_unique_violation(&e, "tenants_role_name_key") =>
                {
                    if new.explicit_slug {
                        return Err(ControlError::Conflict {
                            code: "slug_taken",
                            detail: format!("slug {} is already used by another tenant", new.slug),
                        });
                    }
                    continue;
                }
                other => return other,
            }
        }
        Err(ControlError::Conflict {
            code: "slug_taken",
            detail: "could not allocate a free slug".into(),
        })
    }

    async fn try_create_tenant(
        &self,
        new: &NewTenant<'_>,
        actor: &Actor,
    ) -> Result<Created, ControlError> {
        let req = new.request;
        let mut tx = self.pool.begin().await?;
        if let Some(existing) = sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE org_id = $1 FOR UPDATE"
        )))
        .bind(new.org_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        {
            return same_request(&existing, new).map(|()| Created::Existing(existing));
        }
        if let Some(parent) = &req.parent_org_id {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE org_id = $1)")
                    .bind(parent.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
            if !exists {
                return Err(ControlError::Validation(format!(
                    "parent_org_id {parent} is not a tenant"
                )));
            }
        }
        let slug = if new.explicit_slug {
            new.slug.clone()
        } else {
            free_slug(&mut tx, new.slug).await?
        };
        let normalized = serde_json::json!({
            "name": req.name, "slug": req.slug, "region": new.region, "tier": new.tier,
            "parent_org_id": req.parent_org_id, "admin_email": req.admin_email,
        });
        let tenant = sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO tenants (org_id, name, slug, db_name, role_name, region, tier, status,
                                  parent_org_id, admin_email, request)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'provisioning', $8, $9, $10)
             RETURNING {TENANT_COLUMNS}"
        )))
        .bind(new.org_id.as_str())
        .bind(req.name.as_str())
        .bind(slug.as_str())
        .bind(slug.db_name().as_str())
        .bind(slug.role_name().as_str())
        .bind(new.region.as_str())
        .bind(new.tier.as_str())
        .bind(req.parent_org_id.as_ref().map(OrgId::as_str))
        .bind(req.admin_email.as_deref())
        .bind(&normalized)
        .fetch_one(&mut *tx)
        .await?;
        let op =
            insert_operation(&mut tx, new.org_id, OperationKind::Provision, Value::Null).await?;
        audit(
            &mut tx,
            actor,
            "tenant.create",
            Some(new.org_id),
            None,
            Some(tenant_json(&tenant)),
        )
        .await?;
        tx.commit().await?;
        Ok(Created::New(tenant, op))
    }

    /// Queues an operation on a tenant whose status is one of `from`, moving it to `status_now`
    /// (when given, with `reason`) in the same transaction. An open operation of the same kind is
    /// returned as is; one of another kind is a conflict.
    #[instrument(skip(self, actor))]
    pub async fn request_operation(
        &self,
        org_id: &OrgId,
        kind: OperationKind,
        from: &[TenantStatus],
        status_now: Option<(TenantStatus, Option<&str>)>,
        actor: &Actor,
    ) -> Result<(TenantRow, OperationRow), ControlError> {
        let mut tx = self.pool.begin().await?;
        let tenant = lock_tenant(&mut tx, org_id).await?;
        if let Some(open) = open_operation(&mut tx, org_id).await? {
            if open.kind == kind.as_str() {
                return Ok((tenant, open));
            }
            return Err(ControlError::Conflict {
                code: "operation_in_progress",
                detail: format!(
                    "tenant {org_id} has a {} operation in progress ({})",
                    open.kind, open.id
                ),
            });
        }
        let status = tenant.status()?;
        if !from.contains(&status) {
            return Err(ControlError::Conflict {
                code: "invalid_state",
                detail: format!("cannot {kind} tenant {org_id} while it is {status}"),
            });
        }
        let op = insert_operation(&mut tx, org_id, kind, Value::Null).await?;
        let after = match status_now {
            Some((new_status, reason)) => set_status(&mut tx, org_id, new_status, reason).await?,
            None => tenant.clone(),
        };
        audit(
            &mut tx,
            actor,
            &format!("tenant.{kind}"),
            Some(org_id),
            Some(tenant_json(&tenant)),
            Some(tenant_json(&after)),
        )
        .await?;
        tx.commit().await?;
        Ok((after, op))
    }

    /// Puts the tenant's last failed operation back in the queue with a fresh attempt budget.
    #[instrument(skip(self, actor))]
    pub async fn retry_failed(
        &self,
        org_id: &OrgId,
        actor: &Actor,
    ) -> Result<OperationRow, ControlError> {
        let mut tx = self.pool.begin().await?;
        let tenant = lock_tenant(&mut tx, org_id).await?;
        if let Some(open) = open_operation(&mut tx, org_id).await? {
            return Ok(open);
        }
        // Admin activations run in a lane of their own: the newest operation of each lane is a
        // candidate, and the newer of the failed ones is retried.
        let last: Option<OperationRow> = sqlx::query_as(
            "SELECT id, org_id, kind, state, step, attempts, last_error, payload, created_at, finished_at
             FROM (SELECT DISTINCT ON (kind = 'activate_admin') *
                   FROM operations WHERE org_id = $1
                   ORDER BY kind = 'activate_admin', created_at DESC) newest
             WHERE state = 'failed'
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(org_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(last) = last.filter(|op| op.state == OperationState::Failed.as_str()) else {
            return Err(ControlError::Conflict {
                code: "nothing_to_retry",
                detail: format!("tenant {org_id} has no failed operation to retry"),
            });
        };
        let op: OperationRow = sqlx::query_as(
            "UPDATE operations SET state = 'queued', attempts = 0, run_after = now(), finished_at = NULL,
                    lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
             WHERE id = $1
             RETURNING id, org_id, kind, state, step, attempts, last_error, payload, created_at, finished_at",
        )
        .bind(last.id)
        .fetch_one(&mut *tx)
        .await?;
        let after = if tenant.status()? == TenantStatus::Failed {
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
            Some(tenant_json(&tenant)),
            Some(tenant_json(&after)),
        )
        .await?;
        tx.commit().await?;
        Ok(op)
    }

    // ----- operations -----

    pub async fn operation(&self, id: Uuid) -> Result<Option<OperationRow>, ControlError> {
        Ok(sqlx::query_as::<_, OperationRow>(
            "SELECT id, org_id, kind, state, step, attempts, last_error, payload, created_at, finished_at
             FROM operations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn latest_operation(
        &self,
        org_id: &OrgId,
    ) -> Result<Option<OperationRow>, ControlError> {
        Ok(sqlx::query_as::<_, OperationRow>(
            "SELECT id, org_id, kind, state, step, attempts, last_error, payload, created_at, finished_at
             FROM operations WHERE org_id = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(org_id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Claims the next runnable operation: queued and due, or running with an expired lease (its
    /// worker died). `SKIP LOCKED` lets any number of workers claim side by side.
    pub async fn claim(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<OperationRow>, ControlError> {
        Ok(sqlx::query_as::<_, OperationRow>(
            "UPDATE operations SET state = 'running', lease_owner = $1,
                    lease_expires_at = now() + make_interval(secs => $2), attempts = attempts + 1,
                    updated_at = now()
             WHERE id = (
                 SELECT id FROM operations
                 WHERE (state = 'queued' AND run_after <= now())
                    OR (state = 'running' AND lease_expires_at < now())
                 ORDER BY run_after
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, org_id, kind, state, step, attempts, last_error, payload, created_at, finished_at",
        )
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Extends our lease; false when another worker has taken the operation over.
    pub async fn renew_lease(
        &self,
        id: Uuid,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, ControlError> {
        let done = sqlx::query(
            "UPDATE operations SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that `step` is the next one to run; fenced by the lease.
    pub async fn advance(
        &self,
        id: Uuid,
        worker: &str,
        step: Step,
        lease: Duration,
    ) -> Result<(), ControlError> {
        let done = sqlx::query(
            "UPDATE operations SET step = $3, updated_at = now(),
                    lease_expires_at = now() + make_interval(secs => $4)
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
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
    }

    /// Hands a claimed operation back untouched (shutdown): the attempt does not count.
    pub async fn release(&self, id: Uuid, worker: &str) -> Result<(), ControlError> {
        sqlx::query(
            "UPDATE operations SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    attempts = greatest(attempts - 1, 0), run_after = now(), updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(OPERATIONS_CHANNEL)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Gives the operation back to the queue after a retryable failure, with exponential backoff
    /// (computed in SQL from the attempt count, with jitter).
    pub async fn retry_later(
        &self,
        id: Uuid,
        worker: &str,
        error: &str,
        base: Duration,
        max: Duration,
    ) -> Result<(), ControlError> {
        sqlx::query(
            "UPDATE operations SET state = 'queued', last_error = $3, lease_owner = NULL,
                    lease_expires_at = NULL, updated_at = now(),
                    run_after = now() + make_interval(secs =>
                        least($4 * power(2, greatest(attempts - 1, 0)), $5) * (0.75 + random() / 2))
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(worker)
        .bind(error)
        .bind(base.as_secs_f64())
        .bind(max.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the operation failed for good; a failed provisioning marks the tenant failed.
    pub async fn fail(
        &self,
        op: &OperationRow,
        worker: &str,
        error: &str,
    ) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE operations SET state = 'failed', last_error = $3, lease_owner = NULL,
                    lease_expires_at = NULL, finished_at = now(), updated_at = now()
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(op.id)
        .bind(worker)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ControlError::LeaseLost);
        }
        if op.kind()? == OperationKind::Provision {
            let org_id = op.org_id()?;
            let reason = format!("provisioning failed at step {}: {error}", op.step);
            let before = lock_tenant(&mut tx, &org_id).await?;
            let after = set_status(&mut tx, &org_id, TenantStatus::Failed, Some(&reason)).await?;
            audit(
                &mut tx,
                &Actor::system(),
                "tenant.failed",
                Some(&org_id),
                Some(tenant_json(&before)),
                Some(tenant_json(&after)),
            )
            .await?;
        }
        notify(&mut tx, DONE_CHANNEL, &op.id.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends an operation successfully and applies its effect on the tenant, atomically.
    pub async fn finish(
        &self,
        op: &OperationRow,
        worker: &str,
        effect: Finish,
    ) -> Result<(), ControlError> {
        let org_id = op.org_id()?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE operations SET state = 'succeeded', step = 'done', lease_owner = NULL,
                    lease_expires_at = NULL, finished_at = now(), updated_at = now()
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
        )
        .bind(op.id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ControlError::LeaseLost);
        }
        let before = lock_tenant(&mut tx, &org_id).await?;
        let (action, after) = match effect {
            Finish::Status(status) => {
                // A status set when the operation was asked for keeps the reason given then.
                let reason = before
                    .status_reason
                    .as_deref()
                    .filter(|_| before.status == status.as_str());
                (
                    format!("tenant.{status}"),
                    Some(set_status(&mut tx, &org_id, status, reason).await?),
                )
            }
            Finish::Unchanged => (format!("operation.{}", op.kind), Some(before.clone())),
            Finish::Provisioned => {
                let after = set_status(&mut tx, &org_id, TenantStatus::Active, None).await?;
                if after.admin_email.is_some() {
                    insert_operation(&mut tx, &org_id, OperationKind::ActivateAdmin, Value::Null)
                        .await?;
                }
                ("tenant.active".to_owned(), Some(after))
            }
            Finish::Deleted { retention } => {
                let row = sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
                    "UPDATE tenants SET status = 'deleted', status_reason = NULL, deleted_at = now(),
                            purge_after = now() + make_interval(secs => $2),
                            updated_at = now()
                     WHERE org_id = $1 RETURNING {TENANT_COLUMNS}"
                )))
                .bind(org_id.as_str())
                .bind(retention.as_secs_f64())
                .fetch_one(&mut *tx)
                .await?;
                ("tenant.deleted".to_owned(), Some(row))
            }
            Finish::Purged => {
                sqlx::query("DELETE FROM tenants WHERE org_id = $1")
                    .bind(org_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                ("tenant.purged".to_owned(), None)
            }
        };
        audit(
            &mut tx,
            &Actor::system(),
            &action,
            Some(&org_id),
            Some(tenant_json(&before)),
            after.as_ref().map(tenant_json),
        )
        .await?;
        notify(&mut tx, DONE_CHANNEL, &op.id.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Chooses a server for the tenant (active, in its region, under capacity, fewest tenants) and
    /// records it. Locking the region's servers serializes placements so concurrent workers spread
    /// tenants instead of all picking the same emptiest server. Returns the existing placement if
    /// there is one.
    #[instrument(skip(self))]
    pub async fn place(&self, org_id: &OrgId) -> Result<ServerId, ControlError> {
        let mut tx = self.pool.begin().await?;
        let tenant = lock_tenant(&mut tx, org_id).await?;
        if let Some(server) = tenant.server_id()? {
            return Ok(server);
        }
        sqlx::query("SELECT id FROM database_servers WHERE region = $1 ORDER BY id FOR UPDATE")
            .bind(&tenant.region)
            .execute(&mut *tx)
            .await?;
        let chosen: Option<String> = sqlx::query_scalar(
            "SELECT s.id FROM database_servers s
             LEFT JOIN LATERAL (SELECT count(*) AS n FROM tenants t WHERE t.server_id = s.id) c ON true
             WHERE s.region = $1 AND s.state = 'active' AND c.n < s.capacity
             ORDER BY c.n, s.id LIMIT 1",
        )
        .bind(&tenant.region)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(chosen) = chosen else {
            return Err(ControlError::NoCapacity {
                region: tenant.region,
            });
        };
        sqlx::query("UPDATE tenants SET server_id = $2, updated_at = now() WHERE org_id = $1")
            .bind(org_id.as_str())
            .bind(&chosen)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        chosen.parse().map_err(corrupt)
    }

    pub async fn set_schema_version(
        &self,
        org_id: &OrgId,
        version: Option<i32>,
    ) -> Result<(), ControlError> {
        sqlx::query("UPDATE tenants SET schema_version = $2, updated_at = now() WHERE org_id = $1")
            .bind(org_id.as_str())
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deleted tenants whose retention has run out and that have no operation under way.
    pub async fn expired_tenants(&self) -> Result<Vec<OrgId>, ControlError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT org_id FROM tenants t WHERE status = 'deleted' AND purge_after <= now()
               AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.org_id = t.org_id AND o.state IN ('queued', 'running'))",
        )
        .fetch_all(&self.pool)
        .await?;
        ids.iter().map(|id| id.parse().map_err(corrupt)).collect()
    }

    /// Tenants in a transitional status whose latest operation is neither under way nor failed
    /// (or that have none): the work that should move them on was lost.
    pub async fn stuck_tenants(&self) -> Result<Vec<TenantRow>, ControlError> {
        Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants t
             WHERE status IN ('provisioning', 'deleting')
               AND coalesce((SELECT o.state FROM operations o WHERE o.org_id = t.org_id
                             ORDER BY o.created_at DESC LIMIT 1), 'succeeded') = 'succeeded'"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Queues an operation for the engine itself (reconciler, janitor), with an audit event.
    pub async fn enqueue_system(
        &self,
        org_id: &OrgId,
        kind: OperationKind,
    ) -> Result<Option<OperationRow>, ControlError> {
        let mut tx = self.pool.begin().await?;
        if open_operation(&mut tx, org_id).await?.is_some() {
            return Ok(None);
        }
        let op = insert_operation(&mut tx, org_id, kind, Value::Null).await?;
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
    }

    pub async fn operations_by_state(&self) -> Result<Vec<(String, String, i64)>, ControlError> {
        Ok(
            sqlx::query_as("SELECT kind, state, count(*) FROM operations GROUP BY kind, state")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// Filters of the tenant listing; `after` is the last `org_id` of the previous page.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub region: Option<Region>,
    pub tier: Option<Tier>,
    pub server_id: Option<ServerId>,
    pub after: Option<OrgId>,
    pub limit: i64,
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub seq: i64,
    pub org_id: String,
    pub status: String,
    pub tier: String,
}

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_subject: String,
    pub actor_org: Option<String>,
    pub action: String,
    pub org_id: Option<String>,
    pub request_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl Store {
    pub async fn list_tenants(
        &self,
        filter: &TenantFilter,
    ) -> Result<Vec<TenantRow>, ControlError> {
        Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR region = $2)
               AND ($3::text IS NULL OR tier = $3) AND ($4::text IS NULL OR server_id = $4)
               AND ($5::text IS NULL OR org_id > $5)
             ORDER BY org_id LIMIT $6"
        )))
        .bind(filter.status.map(TenantStatus::as_str))
        .bind(filter.region.as_ref().map(Region::as_str))
        .bind(filter.tier.map(Tier::as_str))
        .bind(filter.server_id.as_ref().map(ServerId::as_str))
        .bind(filter.after.as_ref().map(OrgId::as_str))
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Renames a tenant and/or changes its tier. A tier change queues a `retier` operation that
    /// applies the new limits on the server; the tier itself (and so router pool sizes) changes
    /// at once.
    #[instrument(skip(self, actor))]
    pub async fn update_tenant(
        &self,
        org_id: &OrgId,
        name: Option<&TenantName>,
        tier: Option<Tier>,
        actor: &Actor,
    ) -> Result<(TenantRow, Option<OperationRow>), ControlError> {
        let mut tx = self.pool.begin().await?;
        let before = lock_tenant(&mut tx, org_id).await?;
        let tier_changes = tier.is_some_and(|t| t.as_str() != before.tier);
        let mut op = None;
        if tier_changes {
            let status = before.status()?;
            if !matches!(status, TenantStatus::Active | TenantStatus::Suspended) {
                return Err(ControlError::Conflict {
                    code: "invalid_state",
                    detail: format!(
                        "cannot change the tier of tenant {org_id} while it is {status}"
                    ),
                });
            }
            op = Some(insert_operation(&mut tx, org_id, OperationKind::Retier, Value::Null).await?);
        }
        let after = sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
            "UPDATE tenants SET name = coalesce($2, name), tier = coalesce($3, tier), updated_at = now()
             WHERE org_id = $1 RETURNING {TENANT_COLUMNS}"
        )))
        .bind(org_id.as_str())
        .bind(name.map(TenantName::as_str))
        .bind(tier.map(Tier::as_str))
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut tx,
            actor,
            "tenant.update",
            Some(org_id),
            Some(tenant_json(&before)),
            Some(tenant_json(&after)),
        )
        .await?;
        tx.commit().await?;
        Ok((after, op))
    }

    /// Changes after `after`, oldest first.
    pub async fn changes(&self, after: i64, limit: i64) -> Result<Vec<Change>, ControlError> {
        Ok(sqlx::query_as::<_, Change>(
            "SELECT change_seq AS seq, org_id, status, tier FROM tenants
             WHERE change_seq > $1 ORDER BY change_seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The newest change sequence number handed out.
    pub async fn last_change_seq(&self) -> Result<i64, ControlError> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(change_seq), 0) FROM tenants")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Audit events, newest first; `before_id` pages backwards.
    pub async fn audit_events(
        &self,
        org_id: Option<&OrgId>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, ControlError> {
        Ok(sqlx::query_as::<_, AuditEvent>(
            "SELECT id, at, actor_subject, actor_org, action, org_id, request_id, before, after
             FROM audit_events
             WHERE ($1::text IS NULL OR org_id = $1) AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(org_id.map(OrgId::as_str))
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn tenant_operations(
        &self,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<OperationRow>, ControlError> {
        Ok(sqlx::query_as::<_, OperationRow>(
            "SELECT id, org_id, kind, state, step, attempts, last_error, payload, created_at, finished_at
             FROM operations WHERE org_id = $1 ORDER BY created_at DESC LIMIT $2",
        )
        .bind(org_id.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn server(&self, id: &ServerId) -> Result<Option<ServerRow>, ControlError> {
        Ok(sqlx::query_as::<_, ServerRow>(
            "SELECT s.id, s.region, s.host, s.port, s.admin_user, s.password_env, s.admin_database,
                    s.capacity, s.state, s.template_version,
                    (SELECT count(*) FROM tenants t WHERE t.server_id = s.id) AS tenants
             FROM database_servers s WHERE s.id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records a new server (one not in the configuration file).
    pub async fn add_server(
        &self,
        server: &ServerConfig,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO database_servers (id, region, host, port, admin_user, password_env, admin_database, capacity, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(server.id.as_str())
        .bind(server.region.as_str())
        .bind(&server.host)
        .bind(i32::from(server.port))
        .bind(&server.admin_user)
        .bind(server.password_env.as_deref())
        .bind(&server.admin_database)
        .bind(i32::try_from(server.capacity).unwrap_or(i32::MAX))
        .bind(server.state.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "database_servers_pkey") {
                ControlError::Conflict { code: "server_exists", detail: format!("server {} already exists", server.id) }
            } else {
                e.into()
            }
        })?;
        audit(
            &mut tx,
            actor,
            "server.add",
            None,
            None,
            Some(serde_json::json!({"server_id": server.id, "region": server.region, "host": server.host,
                                    "port": server.port, "capacity": server.capacity})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a tenant's schema version and the last migration error (cleared on success).
    pub async fn record_migration(
        &self,
        org_id: &OrgId,
        version: Option<i32>,
        error: Option<&str>,
    ) -> Result<(), ControlError> {
        sqlx::query(
            "UPDATE tenants SET schema_version = coalesce($2, schema_version), last_migration_error = $3,
                    updated_at = now() WHERE org_id = $1",
        )
        .bind(org_id.as_str())
        .bind(version)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether an organization event at `sequence` (or a later one) was already applied.
    pub async fn org_event_seen(
        &self,
        aggregate_id: &str,
        sequence: i64,
    ) -> Result<bool, ControlError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM zitadel_events WHERE aggregate_id = $1 AND sequence >= $2)",
        )
        .bind(aggregate_id)
        .bind(sequence)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Records an applied organization event.
    pub async fn record_org_event(
        &self,
        aggregate_id: &str,
        sequence: i64,
        event_type: &str,
    ) -> Result<(), ControlError> {
        sqlx::query("INSERT INTO zitadel_events (aggregate_id, sequence, event_type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(aggregate_id)
            .bind(sequence)
            .bind(event_type)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Tenants per status, for metrics.
    pub async fn tenants_by_status(&self) -> Result<Vec<(String, i64)>, ControlError> {
        Ok(
            sqlx::query_as("SELECT status, count(*) FROM tenants GROUP BY status")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// Holds a registry-wide lock (see [`Store::try_lock`]); closing its connection releases it.
pub struct RegistryLock {
    connection: PgConnection,
}

impl RegistryLock {
    /// Releases the lock now (dropping the guard releases it too, when the server sees the
    /// connection close).
    pub async fn release(self) {
        let _ = self.connection.close().await;
    }
}

/// How a finished operation changes its tenant.
pub enum Finish {
    Status(TenantStatus),
    /// The tenant's database is ready: it becomes active, and when it names a first admin, the
    /// admin's activation is queued in the same transaction.
    Provisioned,
    /// The operation changed the servers only (the tenant row was updated when it was asked for).
    Unchanged,
    Deleted {
        retention: Duration,
    },
    Purged,
}

fn same_request(existing: &TenantRow, new: &NewTenant<'_>) -> Result<(), ControlError> {
    let req = new.request;
    let stored = &existing.request;
    let field = |name: &str| stored.get(name).cloned().unwrap_or(Value::Null);
    let same = existing.name == req.name.as_str()
        && existing.region == new.region.as_str()
        && existing.tier == new.tier.as_str()
        && existing.parent_org_id.as_deref() == req.parent_org_id.as_ref().map(OrgId::as_str)
        && field("admin_email") == serde_json::json!(req.admin_email)
        && req
            .slug
            .as_ref()
            .is_none_or(|s| s.as_str() == existing.slug);
    if same {
        Ok(())
    } else {
        Err(ControlError::Conflict {
            code: "tenant_exists",
            detail: format!(
                "tenant {} already exists with a different request (status {})",
                existing.org_id, existing.status
            ),
        })
    }
}

/// The first of `base`, `base_2`, `base_3`, ... that no tenant uses (and that fits 63 bytes).
async fn free_slug(tx: &mut Transaction<'_, Postgres>, base: &Slug) -> Result<Slug, ControlError> {
    let taken: Vec<String> =
        sqlx::query_scalar("SELECT slug FROM tenants WHERE slug = $1 OR slug LIKE $2")
            .bind(base.as_str())
            .bind(format!("{}\\_%", base.as_str()))
            .fetch_all(&mut **tx)
            .await?;
    if !taken.iter().any(|s| s == base.as_str()) {
        return Ok(base.clone());
    }
    (2..10_000)
        .map(|n| format!("{}_{n}", base.as_str()))
        .find(|candidate| !taken.contains(candidate))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ControlError::Conflict {
            code: "slug_taken",
            detail: format!("no free slug near {base}"),
        })
}

async fn lock_tenant(
    tx: &mut Transaction<'_, Postgres>,
    org_id: &OrgId,
) -> Result<TenantRow, ControlError> {
    sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE org_id = $1 FOR UPDATE"
    )))
    .bind(org_id.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))
}

async fn open_operation(
    tx: &mut Transaction<'_, Postgres>,
    org_id: &OrgId,
) -> Result<Option<OperationRow>, ControlError> {
    Ok(sqlx::query_as::<_, OperationRow>(
        "SELECT id, org_id, kind, state, step, attempts, last_error, payload, created_at, finished_at
         FROM operations WHERE org_id = $1 AND state IN ('queued', 'running')
           AND kind <> 'activate_admin'",
    )
    .bind(org_id.as_str())
    .fetch_optional(&mut **tx)
    .await?)
}

async fn insert_operation(
    tx: &mut Transaction<'_, Postgres>,
    org_id: &OrgId,
    kind: OperationKind,
    payload: Value,
) -> Result<OperationRow, ControlError> {
    let op = sqlx::query_as::<_, OperationRow>(
        "INSERT INTO operations (id, org_id, kind, state, step, payload)
         VALUES ($1, $2, $3, 'queued', $4, $5)
         RETURNING id, org_id, kind, state, step, attempts, last_error, payload, created_at, finished_at",
    )
    .bind(Uuid::now_v7())
    .bind(org_id.as_str())
    .bind(kind.as_str())
    .bind(kind.first_step().as_str())
    .bind(if payload.is_null() { serde_json::json!({}) } else { payload })
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e, "operations_one_open_per_tenant")
            || is_unique_violation(&e, "operations_one_open_activation")
        {
            ControlError::Conflict {
                code: "operation_in_progress",
                detail: format!("tenant {org_id} has an operation in progress"),
            }
        } else {
            e.into()
        }
    })?;
    notify(tx, OPERATIONS_CHANNEL, &op.id.to_string()).await?;
    Ok(op)
}

async fn set_status(
    tx: &mut Transaction<'_, Postgres>,
    org_id: &OrgId,
    status: TenantStatus,
    reason: Option<&str>,
) -> Result<TenantRow, ControlError> {
    Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE tenants SET status = $2, status_reason = $3, updated_at = now()
         WHERE org_id = $1 RETURNING {TENANT_COLUMNS}"
    )))
    .bind(org_id.as_str())
    .bind(status.as_str())
    .bind(reason)
    .fetch_one(&mut **tx)
    .await?)
}

async fn notify(
    tx: &mut Transaction<'_, Postgres>,
    channel: &str,
    payload: &str,
) -> Result<(), ControlError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes an audit event inside the caller's transaction.
pub async fn audit(
    tx: &mut Transaction<'_, Postgres>,
    actor: &Actor,
    action: &str,
    org_id: Option<&OrgId>,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), ControlError> {
    sqlx::query(
        "INSERT INTO audit_events (actor_subject, actor_org, action, org_id, request_id, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&actor.subject)
    .bind(actor.org_id.as_deref())
    .bind(action)
    .bind(org_id.map(OrgId::as_str))
    .bind(actor.request_id.as_deref())
    .bind(before)
    .bind(after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn tenant_json(row: &TenantRow) -> Value {
    serde_json::json!({
        "org_id": row.org_id, "name": row.name, "slug": row.slug, "db_name": row.db_name,
        "server_id": row.server_id, "region": row.region, "tier": row.tier,
        "status": row.status, "status_reason": row.status_reason,
    })
}

fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    sqlstate(error).as_deref() == Some("23505")
        && error.as_database_error().and_then(|e| e.constraint()) == Some(constraint)
}
