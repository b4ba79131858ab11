use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgListener;
use tenancy_core::{
    AddServer, ChangeFeed, ConnectionInfo, CreateTenant, Operation, OperationKind, OperationState,
    OrgId, Region, RoleName, Server, ServerId, ServerState, Tenant, TenantChange, TenantHealth,
    TenantStatus, TenantUsage, Tier, UpdateTenant, slug_from_name,
};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, instrument, warn};
use uuid::Uuid;

use crate::admin::AdminActivator;
use crate::config::{Config, ServerConfig};
use crate::error::ControlError;
use crate::faults::FaultInjector;
use crate::migrate;
use crate::pgadmin::ServerAdmin;
use crate::reconcile::{self, Drift};
use crate::secrets;
use crate::store::{
    Actor, Created, DONE_CHANNEL, NewTenant, OPERATIONS_CHANNEL, OperationRow, ServerRow, Store,
    TENANT_CHANGES_CHANNEL, TenantFilter, TenantRow,
};
use crate::worker;

/// The control plane's engine. Cheap to clone; every clone shares the same pools.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: Config,
    pub store: Store,
    /// Admin connections per server: those of the configuration file, and those added through the
    /// API (loaded from the registry on first use).
    pub servers: RwLock<HashMap<ServerId, ServerAdmin>>,
    pub faults: Option<Arc<dyn FaultInjector>>,
    /// Wakes idle workers when an operation is queued.
    pub wake: Notify,
    /// Ids of operations that finished, from the registry's notifications.
    pub done: broadcast::Sender<Uuid>,
    /// Woken when a tenant change is committed (the change feed's long poll waits on it).
    pub tenant_changed: Notify,
    /// Unique per engine instance; worker names derive from it.
    pub instance: String,
    /// Invites organizations' first admins (set by the registry when ZITADEL is configured).
    pub admin_activator: OnceLock<Arc<dyn AdminActivator>>,
}

/// What onboarding did.
#[derive(Debug, Clone)]
pub enum Onboarded {
    /// A new tenant, with the operation that provisions it.
    Created {
        tenant: Tenant,
        operation: Operation,
    },
    /// The same request was made before; nothing new was made.
    Existing { tenant: Tenant },
}

impl Engine {
    /// Connects to the registry (migrating it), records the configured servers and prepares
    /// each one (template database created and migrated). Workers are started separately with
    /// [`Engine::run_workers`].
    pub async fn start(config: Config) -> Result<Self, ControlError> {
        Self::start_with_faults(config, None).await
    }

    /// Connects to the registry (migrating it) without touching the servers: for tools such as
    /// `tenantctl` that must not migrate templates as a side effect of starting.
    pub async fn connect(config: Config) -> Result<Self, ControlError> {
        Self::build(config, None).await
    }

    /// As [`Engine::start`], with a fault injector consulted around every step (crash tests).
    pub async fn start_with_faults(
        config: Config,
        faults: Option<Arc<dyn FaultInjector>>,
    ) -> Result<Self, ControlError> {
        let engine = Self::build(config, faults).await?;
        engine.prepare_servers().await?;
        Ok(engine)
    }

    async fn build(
        config: Config,
        faults: Option<Arc<dyn FaultInjector>>,
    ) -> Result<Self, ControlError> {
        config.validate()?;
        config.master_key()?;
        let url = config.registry.url.expose_secret().to_owned();
        migrate::migrate_registry(&url).await?;
        let store = Store::connect(&url, config.registry.max_connections).await?;
        store.sync_servers(&config.servers).await?;
        let admin_pool = u32::try_from(config.engine.workers)
            .unwrap_or(u32::MAX)
            .saturating_add(2);
        let servers = config
            .servers
            .iter()
            .map(|s| Ok((s.id.clone(), ServerAdmin::new(s, admin_pool)?)))
            .collect::<Result<HashMap<_, _>, ControlError>>()?;
        let (done, _) = broadcast::channel(1024);
        let engine = Engine {
            inner: Arc::new(Inner {
                config,
                store,
                servers: RwLock::new(servers),
                faults,
                tenant_changed: Notify::new(),
                wake: Notify::new(),
                done,
                admin_activator: OnceLock::new(),
                instance: format!(
                    "{}-{}",
                    std::process::id(),
                    &Uuid::new_v4().simple().to_string()[..8]
                ),
            }),
        };
        Ok(engine)
    }

    /// Creates and migrates `tenant_template` on every server that is not disabled. A server
    /// that cannot be prepared is logged and skipped: its operations retry until it can.
    async fn prepare_servers(&self) -> Result<(), ControlError> {
        let rows = self.inner.store.list_servers().await?;
        let target = self.inner.config.engine.template_version;
        let mut admins = Vec::new();
        for row in rows
            .iter()
            .filter(|row| row.state != ServerState::Disabled.as_str())
        {
            match self
                .inner
                .admin(
                    &row.id
                        .parse()
                        .map_err(|e| ControlError::Corrupt(format!("{e}")))?,
                )
                .await
            {
                Ok(admin) => admins.push(admin),
                Err(e) => {
                    error!(server_id = %row.id, error = %e, "server has no usable credentials")
                }
            }
        }
        let prepared = admins
            .iter()
            .map(|admin| async move { (admin.id().clone(), admin.prepare(target).await) });
        for (id, result) in futures::future::join_all(prepared).await {
            match result {
                Ok(version) => {
                    info!(server_id = %id, template_version = version, "server ready");
                    if let Err(e) = self
                        .inner
                        .store
                        .set_template_version(&id, Some(version))
                        .await
                    {
                        warn!(server_id = %id, error = %e, "could not record the template version");
                    }
                }
                Err(e) => {
                    error!(server_id = %id, error = %e, "server not ready; its operations will retry")
                }
            }
        }
        Ok(())
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Enables admin activation: tenants onboarded with an `admin_email` get their first admin
    /// invited once their database is ready. Set once, before workers run.
    pub fn set_admin_activator(&self, activator: Arc<dyn AdminActivator>) {
        if self.inner.admin_activator.set(activator).is_err() {
            warn!("admin activator already set; the first one stays");
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Admin connections to a server known to the registry.
    pub async fn server_admin(&self, id: &ServerId) -> Result<ServerAdmin, ControlError> {
        self.inner.admin(id).await
    }

    /// The tenant role's password, derived from the master key.
    pub fn tenant_password(&self, role: &RoleName) -> Result<SecretString, ControlError> {
        Ok(secrets::tenant_password(
            self.inner.config.master_key()?,
            role,
        ))
    }

    /// Onboards an organization: records the tenant and queues its provisioning. Idempotent per
    /// `org_id`: the same request again returns the existing tenant, a different one is a conflict.
    #[instrument(skip_all, fields(org_id = ?request.org_id))]
    pub async fn onboard(
        &self,
        request: CreateTenant,
        actor: &Actor,
    ) -> Result<Onboarded, ControlError> {
        let region = self.check_onboarding(&request)?;
        let org_id = request.org_id.as_ref().ok_or_else(|| {
            ControlError::Validation(
                "org_id is required (or create_org, to create the organization in ZITADEL)".into(),
            )
        })?;
        let explicit_slug = request.slug.is_some();
        let slug = request
            .slug
            .clone()
            .unwrap_or_else(|| slug_from_name(request.name.as_str()));
        let new = NewTenant {
            org_id,
            request: &request,
            slug: &slug,
            region: &region,
            tier: request.tier.unwrap_or(Tier::DEFAULT),
            explicit_slug,
        };
        match self.inner.store.create_tenant(new, actor).await? {
            Created::New(tenant, op) => {
                info!(op_id = %op.id, db_name = %tenant.db_name, "tenant recorded, provisioning queued");
                Ok(Onboarded::Created {
                    tenant: tenant.to_tenant()?,
                    operation: op.to_operation()?,
                })
            }
            Created::Existing(tenant) => Ok(Onboarded::Existing {
                tenant: tenant.to_tenant()?,
            }),
        }
    }

    /// Checks what can be checked of an onboarding request before anything is created (here or
    /// in ZITADEL); returns the region the tenant goes to.
    pub fn check_onboarding(&self, request: &CreateTenant) -> Result<Region, ControlError> {
        let config = &self.inner.config;
        let region = match &request.region {
            Some(region) => region.clone(),
            None => config.default_region().ok_or_else(|| {
                ControlError::Validation("no region given and no default region configured".into())
            })?,
        };
        if !config.servers.iter().any(|s| s.region == region) {
            return Err(ControlError::Validation(format!(
                "no database server in region {region}"
            )));
        }
        if let Some(email) = &request.admin_email {
            validate_email(email)?;
            if self.inner.admin_activator.get().is_none() {
                return Err(ControlError::Validation(
                    "admin_email needs ZITADEL's management API configured (see the README's ZITADEL section)"
                        .into(),
                ));
            }
        }
        Ok(region)
    }

    /// Suspends an active tenant: its status changes at once (routers refuse it from the next
    /// change-feed poll), then its role can no longer log in and open sessions are ended.
    pub async fn suspend(&self, org_id: &OrgId, actor: &Actor) -> Result<Operation, ControlError> {
        self.suspend_because(org_id, None, actor).await
    }

    /// As [`Engine::suspend`], recording why in the tenant's `status_reason` (so that, say, a
    /// suspension that followed an organization's deactivation can be told from an operator's).
    pub async fn suspend_because(
        &self,
        org_id: &OrgId,
        reason: Option<&str>,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        use TenantStatus::*;
        self.request(
            org_id,
            OperationKind::Suspend,
            &[Active],
            Some((Suspended, reason)),
            actor,
        )
        .await
    }

    /// Undoes a suspension.
    pub async fn resume(&self, org_id: &OrgId, actor: &Actor) -> Result<Operation, ControlError> {
        self.request(
            org_id,
            OperationKind::Resume,
            &[TenantStatus::Suspended],
            None,
            actor,
        )
        .await
    }

    /// Soft delete: the tenant is refused at once (`deleting`), its database kept for the
    /// retention period, then dropped.
    pub async fn delete(&self, org_id: &OrgId, actor: &Actor) -> Result<Operation, ControlError> {
        use TenantStatus::*;
        self.request(
            org_id,
            OperationKind::Deprovision,
            &[Active, Suspended, Failed],
            Some((Deleting, None)),
            actor,
        )
        .await
    }

    /// Drops a deleted tenant's database and role now, without waiting for the retention period.
    pub async fn purge(&self, org_id: &OrgId, actor: &Actor) -> Result<Operation, ControlError> {
        self.request(
            org_id,
            OperationKind::Purge,
            &[TenantStatus::Deleted],
            None,
            actor,
        )
        .await
    }

    /// Runs the tenant's last failed operation again with a fresh attempt budget.
    pub async fn retry(&self, org_id: &OrgId, actor: &Actor) -> Result<Operation, ControlError> {
        self.inner
            .store
            .retry_failed(org_id, actor)
            .await?
            .to_operation()
    }

    async fn request(
        &self,
        org_id: &OrgId,
        kind: OperationKind,
        from: &[TenantStatus],
        status_now: Option<(TenantStatus, Option<&str>)>,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        let (_, op) = self
            .inner
            .store
            .request_operation(org_id, kind, from, status_now, actor)
            .await?;
        op.to_operation()
    }

    pub async fn tenant(&self, org_id: &OrgId) -> Result<Tenant, ControlError> {
        self.inner
            .store
            .tenant(org_id)
            .await?
            .ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))?
            .to_tenant()
    }

    pub async fn operation(&self, id: Uuid) -> Result<Operation, ControlError> {
        self.inner
            .store
            .operation(id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("operation {id}"),
            })?
            .to_operation()
    }

    /// Waits until the operation finished (succeeded or failed) or `timeout` passed, and returns
    /// it as it is then. Woken by the registry's notifications, with a polling fallback.
    pub async fn wait_operation(
        &self,
        id: Uuid,
        timeout: Duration,
    ) -> Result<Operation, ControlError> {
        let mut finished = self.inner.done.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let op = self.operation(id).await?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if matches!(op.state, OperationState::Succeeded | OperationState::Failed)
                || remaining.is_zero()
            {
                return Ok(op);
            }
            let poll = remaining.min(Duration::from_millis(500));
            let _ = tokio::time::timeout(poll, async {
                loop {
                    match finished.recv().await {
                        Ok(done) if done == id => return,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => return,
                        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                    }
                }
            })
            .await;
        }
    }

    /// Marks a server active, draining (keeps its tenants, takes no new ones) or disabled.
    pub async fn set_server_state(
        &self,
        id: &ServerId,
        state: ServerState,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        self.inner.store.set_server_state(id, state, actor).await
    }

    /// Compares the registry with what exists on every server; with `repair`, fixes what can be
    /// fixed safely. Orphan databases are only reported: they may hold data.
    pub async fn reconcile(&self, repair: bool) -> Result<Vec<Drift>, ControlError> {
        reconcile::run(self, repair).await
    }

    /// Tenants matching the filter, ordered by `org_id`.
    pub async fn list_tenants(&self, filter: &TenantFilter) -> Result<Vec<Tenant>, ControlError> {
        self.inner
            .store
            .list_tenants(filter)
            .await?
            .iter()
            .map(TenantRow::to_tenant)
            .collect()
    }

    /// Renames and/or re-tiers a tenant; returns it and the `retier` operation when the tier changed.
    pub async fn update_tenant(
        &self,
        org_id: &OrgId,
        update: &UpdateTenant,
        actor: &Actor,
    ) -> Result<(Tenant, Option<Operation>), ControlError> {
        let (row, op) = self
            .inner
            .store
            .update_tenant(org_id, update.name.as_ref(), update.tier, actor)
            .await?;
        Ok((
            row.to_tenant()?,
            op.map(|op| op.to_operation()).transpose()?,
        ))
    }

    pub async fn tenant_operations(
        &self,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<Operation>, ControlError> {
        self.inner
            .store
            .tenant_operations(org_id, limit)
            .await?
            .iter()
            .map(OperationRow::to_operation)
            .collect()
    }

    /// Changes after `after`; when there are none, waits up to `wait` for one (long poll).
    pub async fn changes(
        &self,
        after: i64,
        limit: i64,
        wait: Duration,
    ) -> Result<ChangeFeed, ControlError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.inner.tenant_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let rows = self.inner.store.changes(after, limit).await?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !rows.is_empty() || remaining.is_zero() {
                let last_seq = rows.last().map_or(after, |c| c.seq);
                let changes = rows
                    .into_iter()
                    .map(|c| {
                        Ok(TenantChange {
                            seq: c.seq,
                            org_id: c.org_id.parse()?,
                            status: c.status.parse()?,
                            tier: c.tier.parse()?,
                        })
                    })
                    .collect::<Result<_, ControlError>>()?;
                return Ok(ChangeFeed { changes, last_seq });
            }
            // Notifications wake us at once; the poll covers a listener that is reconnecting.
            let _ = tokio::time::timeout(remaining.min(Duration::from_secs(1)), changed).await;
        }
    }

    /// What a router needs to reach the tenant's database; the password only while it is active.
    pub async fn connection_info(&self, org_id: &OrgId) -> Result<ConnectionInfo, ControlError> {
        let row = self
            .inner
            .store
            .tenant(org_id)
            .await?
            .ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))?;
        let server_id = row.server_id()?.ok_or_else(|| ControlError::Conflict {
            code: "not_placed",
            detail: format!(
                "tenant {org_id} has no database yet (status {})",
                row.status
            ),
        })?;
        let admin = self.server_admin(&server_id).await?;
        let status = row.status()?;
        let tier = row.tier()?;
        let role = row.role_name()?;
        let password = if status == TenantStatus::Active {
            Some(self.tenant_password(&role)?.expose_secret().to_owned())
        } else {
            None
        };
        Ok(ConnectionInfo {
            org_id: org_id.clone(),
            host: admin.config().host.clone(),
            port: admin.config().port,
            dbname: row.db_name()?,
            user: role,
            password,
            server_id,
            status,
            tier,
            pool_size: self.inner.config.tier_limits(tier).pool_size,
        })
    }

    /// Database size and sessions of a tenant.
    pub async fn usage(&self, org_id: &OrgId) -> Result<TenantUsage, ControlError> {
        let row = self.tenant_row(org_id).await?;
        let server_id = row.server_id()?.ok_or_else(|| ControlError::Conflict {
            code: "not_placed",
            detail: format!("tenant {org_id} has no database yet"),
        })?;
        let db = row.db_name()?;
        let (size_bytes, connections) = self.server_admin(&server_id).await?.usage(&db).await?;
        Ok(TenantUsage {
            org_id: org_id.clone(),
            db_name: db,
            server_id,
            size_bytes,
            connections,
            connection_limit: self.inner.config.tier_limits(row.tier()?).connection_limit,
        })
    }

    /// Whether the tenant's server answers, its database exists, and its schema is current.
    pub async fn health(&self, org_id: &OrgId) -> Result<TenantHealth, ControlError> {
        let row = self.tenant_row(org_id).await?;
        let last_error = self
            .inner
            .store
            .latest_operation(org_id)
            .await?
            .filter(|op| op.state != OperationState::Succeeded.as_str())
            .and_then(|op| op.last_error);
        let (mut reachable, mut database_exists, mut template_version) = (false, false, None);
        if let Some(server_id) = row.server_id()? {
            let db = row.db_name()?;
            if let Ok(admin) = self.server_admin(&server_id).await
                && let Ok(exists) = admin.database_exists(&db).await
            {
                reachable = true;
                database_exists = exists;
            }
            template_version = self
                .inner
                .store
                .server(&server_id)
                .await?
                .and_then(|s| s.template_version);
        }
        Ok(TenantHealth {
            org_id: org_id.clone(),
            status: row.status()?,
            reachable,
            database_exists,
            schema_version: row.schema_version,
            template_version,
            last_error,
        })
    }

    async fn tenant_row(&self, org_id: &OrgId) -> Result<TenantRow, ControlError> {
        self.inner
            .store
            .tenant(org_id)
            .await?
            .ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))
    }

    pub async fn servers(&self) -> Result<Vec<Server>, ControlError> {
        self.inner
            .store
            .list_servers()
            .await?
            .iter()
            .map(server_view)
            .collect()
    }

    pub async fn server(&self, id: &ServerId) -> Result<Server, ControlError> {
        let row = self
            .inner
            .store
            .server(id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("server {id}"),
            })?;
        server_view(&row)
    }

    /// Registers a server, then prepares it (template created and migrated). Its password must be
    /// in this process's environment under `password_env`, and in every other registry process's.
    pub async fn add_server(
        &self,
        request: &AddServer,
        actor: &Actor,
    ) -> Result<Server, ControlError> {
        if std::env::var_os(&request.password_env).is_none() {
            return Err(ControlError::Validation(format!(
                "environment variable {} is not set in the registry process",
                request.password_env
            )));
        }
        let config = ServerConfig {
            id: request.id.clone(),
            region: request.region.clone(),
            host: request.host.clone(),
            port: request.port,
            admin_user: request.admin_user.clone(),
            password_env: Some(request.password_env.clone()),
            password: None,
            admin_database: request
                .admin_database
                .clone()
                .unwrap_or_else(|| "postgres".into()),
            capacity: request.capacity,
            state: ServerState::Active,
        };
        self.inner.store.add_server(&config, actor).await?;
        let admin = self.inner.admin(&config.id).await?;
        let version = admin
            .prepare(self.inner.config.engine.template_version)
            .await?;
        self.inner
            .store
            .set_template_version(&config.id, Some(version))
            .await?;
        self.server(&config.id).await
    }

    /// Starts this process's workers, the notification listener and the maintenance loop
    /// (purging expired tenants, reconciling). Stop them with [`Workers::shutdown`].
    pub fn run_workers(&self) -> Workers {
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(listen(self.clone(), cancel.clone())));
        for n in 0..self.inner.config.engine.workers {
            let name = format!("{}-w{n}", self.inner.instance);
            let span = info_span!("worker", worker = %name);
            tasks.push(tokio::spawn(
                worker::run(self.inner.clone(), name, cancel.clone()).instrument(span),
            ));
        }
        tasks.push(tokio::spawn(maintain(self.clone(), cancel.clone())));
        Workers { cancel, tasks }
    }
}

/// This process's running workers.
pub struct Workers {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Stops taking work; a worker in the middle of an operation finishes its current step and
    /// hands the operation back to the queue for the next worker.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Relays the registry's notifications: queued operations wake workers, finished ones wake
/// waiters. Missed notifications (a reconnect) are covered by the workers' polling.
async fn listen(engine: Engine, cancel: CancellationToken) {
    let inner = &engine.inner;
    while !cancel.is_cancelled() {
        let mut listener = match PgListener::connect_with(inner.store.pool()).await {
            Ok(listener) => listener,
            Err(e) => {
                warn!(error = %e, "notification listener cannot connect; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = cancel.cancelled() => return,
                }
            }
        };
        if let Err(e) = listener
            .listen_all([OPERATIONS_CHANNEL, DONE_CHANNEL])
            .await
        {
            warn!(error = %e, "LISTEN failed; retrying");
            continue;
        }
        loop {
            let notification = tokio::select! {
                n = listener.recv() => n,
                _ = cancel.cancelled() => return,
            };
            match notification {
                Ok(n) if n.channel() == OPERATIONS_CHANNEL => inner.wake.notify_waiters(),
                Ok(n) if n.channel() == TENANT_CHANGES_CHANNEL => {
                    inner.tenant_changed.notify_waiters()
                }
                Ok(n) => {
                    if let Ok(id) = n.payload().parse() {
                        let _ = inner.done.send(id);
                    }
                }
                Err(e) => {
                    warn!(error = %e, "notification listener lost its connection");
                    break;
                }
            }
        }
    }
}

/// Periodic housekeeping: queue purges of tenants past retention, and reconcile with repair.
async fn maintain(engine: Engine, cancel: CancellationToken) {
    let interval = engine.inner.config.engine.reconcile_interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return,
        }
        match engine.inner.store.expired_tenants().await {
            Ok(expired) => {
                for org_id in expired {
                    match engine
                        .inner
                        .store
                        .enqueue_system(&org_id, OperationKind::Purge)
                        .await
                    {
                        Ok(Some(op)) => {
                            info!(%org_id, op_id = %op.id, "retention over, purge queued")
                        }
                        Ok(None) => {}
                        Err(e) => warn!(%org_id, error = %e, "could not queue purge"),
                    }
                }
            }
            Err(e) => warn!(error = %e, "could not list expired tenants"),
        }
        match engine.reconcile(true).await {
            Ok(drift) => {
                for d in drift {
                    warn!(kind = ?d.kind, server_id = ?d.server_id, name = %d.name, repaired = d.repaired, "{}", d.detail);
                }
            }
            Err(e) => warn!(error = %e, "reconcile failed"),
        }
    }
}

fn validate_email(email: &str) -> Result<(), ControlError> {
    let ok = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if ok {
        Ok(())
    } else {
        Err(ControlError::Validation(
            "admin_email is not a valid e-mail address".into(),
        ))
    }
}

impl Inner {
    /// Admin connections to a server: from the configuration, or built from the registry's row
    /// (a server added through the API) with the password from the environment variable it names.
    pub(crate) async fn admin(&self, id: &ServerId) -> Result<ServerAdmin, ControlError> {
        if let Some(admin) = self.servers.read().expect("servers lock").get(id) {
            return Ok(admin.clone());
        }
        let row = self
            .store
            .server(id)
            .await?
            .ok_or_else(|| ControlError::UnknownServer(id.clone()))?;
        let mut config = row.to_config()?;
        let var = config
            .password_env
            .clone()
            .ok_or_else(|| ControlError::UnknownServer(id.clone()))?;
        let password = std::env::var(&var).map_err(|_| {
            ControlError::Config(format!(
                "server {id}: environment variable {var} is not set in this process"
            ))
        })?;
        config.password = Some(password.into());
        let pool = u32::try_from(self.config.engine.workers)
            .unwrap_or(u32::MAX)
            .saturating_add(2);
        let admin = ServerAdmin::new(&config, pool)?;
        self.servers
            .write()
            .expect("servers lock")
            .entry(id.clone())
            .or_insert(admin.clone());
        Ok(admin)
    }

    /// Every server the registry knows, in id order.
    pub(crate) async fn server_ids(&self) -> Result<Vec<ServerId>, ControlError> {
        self.store
            .list_servers()
            .await?
            .iter()
            .map(|row| {
                row.id
                    .parse()
                    .map_err(|e| ControlError::Corrupt(format!("{e}")))
            })
            .collect()
    }
}

fn server_view(row: &ServerRow) -> Result<Server, ControlError> {
    let config = row.to_config()?;
    Ok(Server {
        id: config.id,
        region: config.region,
        host: config.host,
        port: config.port,
        capacity: config.capacity,
        state: config.state,
        template_version: row.template_version,
        tenants: row.tenants,
    })
}
