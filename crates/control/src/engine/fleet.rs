//! Fleet migrations: the template on every server first, then every selected tenant database,
//! with bounded concurrency per server, canaries first, halting on the first failure unless
//! told to keep going. Each tenant's pending migrations run in one transaction, so a tenant that
//! fails stays exactly at its previous version. Rerunning continues where a run stopped: tenants
//! already at the target are skipped, and refinery never applies a migration twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use tenancy_core::{DbName, OrgId, ServerId, TenantSelector, TenantStatus};
use tokio::sync::Mutex;
use tracing::instrument;

use super::Engine;
use crate::error::ControlError;
use crate::migrate;
use crate::pgadmin::ServerAdmin;
use crate::store::{LockName, TenantFilter};
use tenancy_core::ErrorCode;

/// Which tenants to migrate and how.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// The tenants to migrate; active and suspended ones when it names no status.
    pub selector: TenantSelector,
    /// Version to migrate to; the latest when `None`.
    pub target: Option<i32>,
    /// Tenant databases migrated at once on one server.
    pub concurrency: usize,
    /// Migrate this many tenants first, one at a time; stop if any of them fails.
    pub canary: usize,
    /// Go on past failed tenants (canaries excepted) instead of halting.
    pub keep_going: bool,
    /// Migrate the templates only: tenants cloned from then on are born at the target, and no
    /// tenant database is touched (a deployment's upgrade hook).
    pub templates_only: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            selector: TenantSelector::default(),
            target: None,
            concurrency: 4,
            canary: 0,
            keep_going: false,
            templates_only: false,
        }
    }
}

/// One tenant in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedTenant {
    pub org_id: OrgId,
    pub db_name: DbName,
    pub server_id: ServerId,
    /// The version the registry recorded (the database itself is read again when migrating).
    pub from: Option<i32>,
    pub to: i32,
}

/// What a run would do.
#[derive(Debug, Clone, Serialize)]
pub struct FleetPlan {
    pub target: i32,
    pub servers: Vec<ServerId>,
    pub tenants: Vec<PlannedTenant>,
}

/// Progress, one event at a time (a progress bar or JSON lines in `tenantctl`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FleetEvent {
    TemplateMigrated {
        server_id: ServerId,
        version: i32,
    },
    TenantMigrated {
        org_id: OrgId,
        db_name: DbName,
        from: Option<i32>,
        to: i32,
        millis: u128,
        canary: bool,
    },
    TenantUpToDate {
        org_id: OrgId,
        db_name: DbName,
        version: i32,
    },
    TenantFailed {
        org_id: OrgId,
        db_name: DbName,
        version: Option<i32>,
        error: String,
        canary: bool,
    },
    /// Left alone: the tenant is being moved to another server (its schema must not change
    /// under an online move). Migrate it again once the move is done.
    TenantMoving {
        org_id: OrgId,
        db_name: DbName,
    },
    Halted {
        reason: String,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetReport {
    pub target: i32,
    pub migrated: usize,
    pub up_to_date: usize,
    pub failed: Vec<(OrgId, String)>,
    /// Tenants not attempted because the run halted.
    pub not_attempted: usize,
    /// Tenants left alone because a move of theirs was under way.
    pub moving: Vec<OrgId>,
    pub millis: u128,
}

impl FleetReport {
    pub fn success(&self) -> bool {
        self.failed.is_empty() && self.not_attempted == 0 && self.moving.is_empty()
    }
}

impl Engine {
    /// The tenants a run with these options would touch.
    pub async fn plan_migration(
        &self,
        options: &MigrateOptions,
    ) -> Result<FleetPlan, ControlError> {
        let target = options
            .target
            .unwrap_or_else(migrate::latest_template_version);
        if target > migrate::latest_template_version() || target < 1 {
            return Err(ControlError::Validation(format!(
                "target version {target} does not exist (latest is {})",
                migrate::latest_template_version()
            )));
        }
        let mut selector = options.selector.clone();
        if selector.statuses.is_empty() {
            selector.statuses = vec![TenantStatus::Active, TenantStatus::Suspended];
        }
        let mut tenants = Vec::new();
        for tenant in self.all_tenants(&selector.into()).await? {
            if let Some(server_id) = tenant.server_id {
                tenants.push(PlannedTenant {
                    org_id: tenant.org_id,
                    db_name: tenant.db_name,
                    server_id,
                    from: tenant.schema_version,
                    to: target,
                });
            }
        }
        let mut servers: Vec<ServerId> = self.servers().await?.into_iter().map(|s| s.id).collect();
        if let Some(only) = &options.selector.server_id {
            servers.retain(|s| s == only);
        }
        Ok(FleetPlan {
            target,
            servers,
            tenants,
        })
    }

    /// Runs a fleet migration. Only one runs at a time across the fleet (a registry advisory
    /// lock); a second one is refused at once.
    #[instrument(skip_all, fields(target = options.target))]
    pub async fn migrate_fleet(
        &self,
        options: &MigrateOptions,
        on_event: Arc<dyn Fn(FleetEvent) + Send + Sync>,
    ) -> Result<FleetReport, ControlError> {
        let started = Instant::now();
        let plan = self.plan_migration(options).await?;
        let Some(lock) = self.try_lock(&LockName::FleetMigration).await? else {
            return Err(ControlError::conflict(
                ErrorCode::MigrationRunning,
                "another fleet migration is running",
            ));
        };

        // Templates first, so tenants cloned from now on are born at the target.
        for server in &plan.servers {
            let admin = self.server_admin(server).await?;
            let version = admin.prepare(Some(plan.target)).await?;
            self.record_template_version(server, version).await?;
            on_event(FleetEvent::TemplateMigrated {
                server_id: server.clone(),
                version,
            });
        }

        if options.templates_only {
            lock.release().await;
            return Ok(FleetReport {
                target: plan.target,
                millis: started.elapsed().as_millis(),
                ..Default::default()
            });
        }

        // Tenants are listed once the templates moved: one activated at the old version before
        // its template's new version was recorded is in the list; one activated after is
        // migrated by its own provisioning (see `Store::finish`).
        let tenants = self.plan_migration(options).await?.tenants;

        let report = Arc::new(Mutex::new(FleetReport {
            target: plan.target,
            ..Default::default()
        }));
        let halted = Arc::new(AtomicBool::new(false));
        let (canaries, rest) = tenants.split_at(options.canary.min(tenants.len()));
        for tenant in canaries {
            if !self.migrate_one(tenant, true, &report, &on_event).await? {
                halted.store(true, Ordering::SeqCst);
                on_event(FleetEvent::Halted {
                    reason: format!("canary {} failed", tenant.org_id),
                });
                break;
            }
        }

        let mut by_server: BTreeMap<&ServerId, Vec<&PlannedTenant>> = BTreeMap::new();
        for tenant in rest {
            by_server.entry(&tenant.server_id).or_default().push(tenant);
        }
        let mut workers: Vec<tokio::task::JoinHandle<Result<(), ControlError>>> = Vec::new();
        for tenants in by_server.into_values() {
            let queue = Arc::new(Mutex::new(
                tenants.into_iter().cloned().collect::<Vec<_>>().into_iter(),
            ));
            for _ in 0..options.concurrency.max(1) {
                let (engine, queue, report, halted, on_event) = (
                    self.clone(),
                    queue.clone(),
                    report.clone(),
                    halted.clone(),
                    on_event.clone(),
                );
                let keep_going = options.keep_going;
                workers.push(tokio::spawn(async move {
                    loop {
                        if halted.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        let Some(tenant) = queue.lock().await.next() else {
                            return Ok(());
                        };
                        let ok = engine
                            .migrate_one(&tenant, false, &report, &on_event)
                            .await?;
                        if !ok && !keep_going && !halted.swap(true, Ordering::SeqCst) {
                            on_event(FleetEvent::Halted {
                                reason: format!("tenant {} failed", tenant.org_id),
                            });
                        }
                    }
                }));
            }
        }
        for worker in workers {
            worker.await.map_err(|e| {
                ControlError::Migration(format!("migration worker panicked: {e}"))
            })??;
        }
        lock.release().await;
        let mut report = Arc::try_unwrap(report)
            .map(Mutex::into_inner)
            .unwrap_or_else(|r| r.blocking_lock().clone());
        report.not_attempted = tenants.len()
            - report.migrated
            - report.up_to_date
            - report.failed.len()
            - report.moving.len();
        report.millis = started.elapsed().as_millis();
        Ok(report)
    }

    /// Migrates one tenant; false when it failed (recorded in the registry and the report).
    async fn migrate_one(
        &self,
        tenant: &PlannedTenant,
        canary: bool,
        report: &Mutex<FleetReport>,
        on_event: &Arc<dyn Fn(FleetEvent) + Send + Sync>,
    ) -> Result<bool, ControlError> {
        let org_id = &tenant.org_id;
        if self.store().moving(org_id).await? {
            report.lock().await.moving.push(org_id.clone());
            on_event(FleetEvent::TenantMoving {
                org_id: org_id.clone(),
                db_name: tenant.db_name.clone(),
            });
            return Ok(true);
        }
        let admin = self.server_admin(&tenant.server_id).await?;
        let started = Instant::now();
        let current = tenant_version(&admin, tenant.db_name.as_str()).await;
        if let Ok(Some(version)) = current
            && version >= tenant.to
        {
            self.record_migration(org_id, Some(version), None).await?;
            report.lock().await.up_to_date += 1;
            on_event(FleetEvent::TenantUpToDate {
                org_id: tenant.org_id.clone(),
                db_name: tenant.db_name.clone(),
                version,
            });
            return Ok(true);
        }
        let result = admin
            .migrate(tenant.db_name.as_str(), Some(tenant.to))
            .await;
        match result {
            Ok(version) => {
                self.record_migration(org_id, Some(version), None).await?;
                report.lock().await.migrated += 1;
                on_event(FleetEvent::TenantMigrated {
                    org_id: tenant.org_id.clone(),
                    db_name: tenant.db_name.clone(),
                    from: current.ok().flatten(),
                    to: version,
                    millis: started.elapsed().as_millis(),
                    canary,
                });
                metrics::histogram!("tenancy_tenant_migration_seconds")
                    .record(started.elapsed().as_secs_f64());
                Ok(true)
            }
            Err(e) => {
                let version = tenant_version(&admin, tenant.db_name.as_str())
                    .await
                    .ok()
                    .flatten();
                let error = e.to_string();
                self.record_migration(org_id, version, Some(&error)).await?;
                report
                    .lock()
                    .await
                    .failed
                    .push((tenant.org_id.clone(), error.clone()));
                on_event(FleetEvent::TenantFailed {
                    org_id: tenant.org_id.clone(),
                    db_name: tenant.db_name.clone(),
                    version,
                    error,
                    canary,
                });
                Ok(false)
            }
        }
    }

    /// Versions and drift of every tenant: behind the template, or at the template's version with
    /// a different schema. Each tenant database is read once (its version and its schema's
    /// digest, one connection), [`STATUS_CONCURRENCY`] times the servers at a time.
    pub async fn fleet_status(&self) -> Result<Vec<TenantSchemaStatus>, ControlError> {
        let mut templates: BTreeMap<ServerId, (Option<i32>, Option<String>)> = BTreeMap::new();
        let mut admins = BTreeMap::new();
        for server in self.servers().await? {
            let admin = self.server_admin(&server.id).await?;
            let fingerprint = read_schema(&admin, "tenant_template")
                .await
                .ok()
                .map(|(_, fingerprint)| fingerprint);
            templates.insert(server.id.clone(), (server.template_version, fingerprint));
            admins.insert(server.id, admin);
        }
        let tenants: Vec<_> = self
            .all_tenants(&TenantFilter::default())
            .await?
            .into_iter()
            .filter(|t| t.server_id.is_some())
            .collect();
        let concurrency = STATUS_CONCURRENCY * admins.len().max(1);
        let jobs: Vec<_> = tenants
            .iter()
            .map(|t| {
                let admin = t.server_id.as_ref().and_then(|id| admins.get(id)).cloned();
                (admin, t.db_name.clone())
            })
            .collect();
        let reads = futures::stream::iter(
            jobs.into_iter()
                .map(|(admin, db)| async move { read_schema(&admin?, db.as_str()).await.ok() }),
        )
        .buffered(concurrency)
        .collect::<Vec<_>>()
        .await;
        Ok(tenants
            .into_iter()
            .zip(reads)
            .map(|(tenant, read)| {
                let server_id = tenant.server_id.expect("tenants with a server");
                let (template_version, template_fingerprint) =
                    templates.get(&server_id).cloned().unwrap_or_default();
                let (version, fingerprint) = match read {
                    Some((version, fingerprint)) => (version, Some(fingerprint)),
                    None => (None, None),
                };
                let drift = match (version, template_version) {
                    (Some(v), Some(t)) if v < t => SchemaDrift::Behind,
                    (Some(v), Some(t))
                        if v == t
                            && fingerprint.is_some()
                            && fingerprint != template_fingerprint =>
                    {
                        SchemaDrift::SchemaDiffers
                    }
                    (None, _) => SchemaDrift::Unknown,
                    _ => SchemaDrift::None,
                };
                TenantSchemaStatus {
                    org_id: tenant.org_id,
                    db_name: tenant.db_name,
                    server_id,
                    status: tenant.status,
                    version,
                    template_version,
                    drift,
                    last_migration_error: tenant.last_migration_error,
                }
            })
            .collect())
    }
}

/// Tenant databases [`Engine::fleet_status`] reads at once for each server (this times the
/// servers in all, in the registry's order): each read is a connection (backend start and
/// login) and a catalog query; 8 keeps a 2-core server busy without crowding its connections.
pub const STATUS_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaDrift {
    None,
    /// Older than the template.
    Behind,
    /// Same version as the template, different tables, columns, indexes or constraints.
    SchemaDiffers,
    /// The database could not be read.
    Unknown,
}

impl std::fmt::Display for SchemaDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SchemaDrift::None => "none",
            SchemaDrift::Behind => "behind",
            SchemaDrift::SchemaDiffers => "schema_differs",
            SchemaDrift::Unknown => "unknown",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantSchemaStatus {
    pub org_id: OrgId,
    pub db_name: DbName,
    pub server_id: ServerId,
    pub status: TenantStatus,
    pub version: Option<i32>,
    pub template_version: Option<i32>,
    pub drift: SchemaDrift,
    pub last_migration_error: Option<String>,
}

async fn connect_as_admin(admin: &ServerAdmin, db: &str) -> Result<PgConnection, ControlError> {
    PgConnection::connect_with(&admin.options(db))
        .await
        .map_err(ControlError::server(admin.id()))
}

async fn tenant_version(admin: &ServerAdmin, db: &str) -> Result<Option<i32>, ControlError> {
    let mut conn = connect_as_admin(admin, db).await?;
    let version = schema_version(&mut conn)
        .await
        .map_err(ControlError::server(admin.id()));
    let _ = conn.close().await;
    version
}

/// The newest version refinery's history records in the connected database.
async fn schema_version(conn: &mut PgConnection) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(version) FROM refinery_schema_history")
        .fetch_one(conn)
        .await
}

/// A database's schema version (refinery's history; `None` without one) and a digest of its
/// public schema: columns with types, indexes and constraints. One connection.
async fn read_schema(admin: &ServerAdmin, db: &str) -> Result<(Option<i32>, String), ControlError> {
    let mut conn = connect_as_admin(admin, db).await?;
    let fingerprint = sqlx::query_scalar(
        "SELECT md5(coalesce(string_agg(x, ',' ORDER BY x), '')) FROM (
            SELECT format('col:%s.%s:%s:%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull) AS x
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v')
              AND c.relname <> 'refinery_schema_history'
            UNION ALL SELECT format('idx:%s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
            UNION ALL SELECT format('con:%s:%s', conname, pg_get_constraintdef(oid))
                      FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         ) s",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(ControlError::server(admin.id()));
    let version = schema_version(&mut conn).await.ok().flatten();
    let _ = conn.close().await;
    Ok((version, fingerprint?))
}
