//! The registry database, by aggregate: `tenants`, `operations` (the queue), `moves`, `servers`,
//! `spares` (the warm pool), `settings`, `quotas`, `usage`, `rollouts` (tier roll-outs), `feed`
//! (the change feed), `org_events` (ZITADEL events applied) and `audit`. The aggregates import
//! nothing from each other: the transactions that span them live in `lifecycle`, and which
//! server takes a tenant is decided in `placement` alone. Registry-wide locks are named in
//! `locks`, with the lock order.
//!
//! Rows are private to this module and decode into `tenancy-core` types (`Tenant`, `Operation`,
//! `Server`, ...) where they are read, so no caller compares a status as text. Every query is
//! named and goes through [`Store::run`], which traces it (a `store` span with the query's name)
//! and times it (`tenancy_store_seconds{op}`, `tenancy_store_errors_total{op}`). Anything that
//! changes a tenant writes its audit event in the same transaction.

/// A single-statement write (its text, a literal ending in its `WHERE` condition) whose commit
/// does not wait for its WAL to reach disk: for bookkeeping an operation can lose in a crash of
/// the registry database and redo, since every step is idempotent (a step advance, a lease
/// renewal). `set_config(.., true)` holds until the statement's own transaction ends, commit
/// included, and nothing after it; the uncorrelated subquery runs once, before any row is
/// written. One round trip, where `BEGIN; SET LOCAL ...; UPDATE; COMMIT` takes four. Visibility
/// and row locks, and so the lease fencing, are as in any write; only durability is relaxed.
macro_rules! relaxed_commit {
    ($write:literal) => {
        concat!(
            $write,
            " AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL"
        )
    };
}

mod archive;
mod audit;
mod backups;
mod console;
mod feed;
mod lifecycle;
mod locks;
mod moves;
mod operations;
mod org_events;
mod placement;
mod quotas;
mod rollouts;
mod servers;
mod settings;
mod spares;
mod tenants;
mod usage;

use std::future::Future;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use tracing::Instrument;

use crate::error::{ControlError, sqlstate};

pub use archive::BaseBackup;
pub use audit::{Actor, AuditEvent, AuditFilter};
pub(crate) use audit::{audit, commit_audited, commit_change};
pub use backups::{Measured, StoredBackup};
pub use console::ConsoleSession;
pub use feed::TENANT_CHANGES_CHANNEL;
pub use lifecycle::{
    Cascade, Created, Effect, Finish, Finished, NewTenant, Now, Recorded, Requested,
};
pub use locks::LockName;
pub use moves::{MOVABLE, NewMove};
pub use operations::{DONE_CHANNEL, Lease, OPERATIONS_CHANNEL, OperationFilter};
pub use org_events::{OrgEventOutcome, PendingOrgEvent};
pub use quotas::{AgencyCap, CountOutcome, Increment};
pub use servers::ServerChange;
pub use settings::{SettingWrite, StoredSetting, StoredValue};
pub(crate) use spares::Spare;
pub use tenants::TenantFilter;
pub use usage::Sample;

/// Handle on the registry database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

type Tx = Transaction<'static, Postgres>;

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ControlError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs one named query or transaction: traced, timed, and counted when it fails.
    async fn run<T>(
        &self,
        op: &'static str,
        work: impl Future<Output = Result<T, ControlError>>,
    ) -> Result<T, ControlError> {
        let started = Instant::now();
        let result = work.instrument(tracing::debug_span!("store", op)).await;
        metrics::histogram!("tenancy_store_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
        if let Err(error) = &result
            && matches!(error, ControlError::Registry(_))
        {
            metrics::counter!("tenancy_store_errors_total", "op" => op).increment(1);
        }
        result
    }

    async fn begin(&self) -> Result<Tx, ControlError> {
        Ok(self.pool.begin().await?)
    }

    /// Takes the registry-wide lock `name` if no one holds it (a session advisory lock on a
    /// connection of its own): at most one holder across every replica and tool. Released when
    /// the guard is dropped, or when its holder dies.
    pub async fn try_lock(&self, name: &LockName) -> Result<Option<RegistryLock>, ControlError> {
        self.run("try_lock", async {
            let mut connection = PgConnection::connect_with(&self.pool.connect_options()).await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(name.to_string())
                .fetch_one(&mut connection)
                .await?;
            Ok(locked.then_some(RegistryLock { connection }))
        })
        .await
    }

    /// Whether someone holds the registry-wide lock `name` (asked without taking it, so that
    /// any number of askers never get in each other's way or the holder's).
    pub async fn lock_held(&self, name: &LockName) -> Result<bool, ControlError> {
        self.run("lock_held", async {
            Ok(sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks
                                WHERE locktype = 'advisory' AND granted AND objsubid = 1
                                  AND database = (SELECT oid FROM pg_database
                                                  WHERE datname = current_database())
                                  AND ((classid::bigint << 32) | objid::bigint)
                                      = hashtext($1)::bigint)",
            )
            .bind(name.to_string())
            .fetch_one(&self.pool)
            .await?)
        })
        .await
    }

    /// Takes the registry-wide lock `name`, waiting for its holder (every replica and tool) to
    /// release it. Released when the guard is dropped, or when its holder dies.
    pub async fn lock(&self, name: &LockName) -> Result<RegistryLock, ControlError> {
        self.run("lock", async {
            let mut connection = PgConnection::connect_with(&self.pool.connect_options()).await?;
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(name.to_string())
                .execute(&mut connection)
                .await?;
            Ok(RegistryLock { connection })
        })
        .await
    }

    /// The registry's migration version (for readiness, and for tools that must not migrate).
    pub async fn schema_version(&self) -> Result<Option<i32>, ControlError> {
        self.run("schema_version", async {
            let exists: bool =
                sqlx::query_scalar("SELECT to_regclass('refinery_schema_history') IS NOT NULL")
                    .fetch_one(&self.pool)
                    .await?;
            if !exists {
                return Ok(None);
            }
            Ok(
                sqlx::query_scalar("SELECT max(version) FROM refinery_schema_history")
                    .fetch_one(&self.pool)
                    .await?,
            )
        })
        .await
    }
}

/// Holds a registry-wide lock (see [`Store::try_lock`]); closing its connection releases it.
pub struct RegistryLock {
    connection: PgConnection,
}

impl RegistryLock {
    /// Whether the lock's session is still there (a lost connection lost the lock: another
    /// replica may hold it now).
    pub async fn is_held(&mut self) -> bool {
        sqlx::query("SELECT 1")
            .execute(&mut self.connection)
            .await
            .is_ok()
    }

    /// Releases the lock now, so that whoever asks next (see [`Store::lock_held`]) finds it
    /// free. Closing alone would not do: the server lets go of a closed session's locks a little
    /// later. Dropping the guard releases the lock too, that little later.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut self.connection)
            .await;
        let _ = self.connection.close().await;
    }
}

/// A nullable column decoded into an optional core type (sqlx's `try_from` needs a local type
/// to convert into; `Option<T>` is not one).
#[derive(Debug, Clone)]
struct Maybe<T>(Option<T>);

impl<T: TryFrom<String>> TryFrom<Option<String>> for Maybe<T> {
    type Error = T::Error;
    fn try_from(value: Option<String>) -> Result<Self, T::Error> {
        value.map(T::try_from).transpose().map(Maybe)
    }
}

async fn notify(tx: &mut Tx, channel: &str, payload: &str) -> Result<(), ControlError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Typed identifiers from the text the registry stores: one that does not parse means a
/// corrupt registry.
fn parse_all<T, C>(ids: Vec<String>) -> Result<C, ControlError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
    C: FromIterator<T>,
{
    ids.into_iter()
        .map(|id| id.parse().map_err(ControlError::corrupt))
        .collect()
}

fn is_unique_violation(error: &ControlError, constraint: &str) -> bool {
    let ControlError::Registry(error) = error else {
        return false;
    };
    sqlstate(error).as_deref() == Some("23505")
        && error.as_database_error().and_then(|e| e.constraint()) == Some(constraint)
}
