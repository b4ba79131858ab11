//! The pool of pools: one lazily created deadpool-postgres pool per tenant, sized by tier, and a
//! connection budget per database server that no number of tenants can exceed.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool::Runtime;
use deadpool::managed::{Metrics, PoolError, RecycleError, RecycleResult};
use deadpool_postgres::{ClientWrapper, ManagerConfig, RecyclingMethod};
use tenancy_core::{
    ConnectionInfo, EffectiveFeatures, OrgId, SslMode, Tenant, TenantPlace, TenantStatus,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::{debug, warn};

use crate::error::RouterError;
use crate::quotas::{QuotaCounters, Quotas};
use crate::resolver::Resolver;
use crate::settings::{SettingsCache, TenantSettings};

/// How long a borrow refused at login waits before it resolves the tenant again and retries;
/// the wait doubles, up to the second figure, while the borrower's `acquire_timeout` lasts.
const LOGIN_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_LOGIN_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A server that refused the tenant's credentials (SQLSTATE class 28).
fn is_login_refusal(error: &RouterError) -> bool {
    matches!(error, RouterError::ServerUnavailable { source, .. }
    if source.code().is_some_and(|c| {
        let code = c.code();
        // 28: refused at login (a rotated password, a role blocked by a suspension or by
        // a move's cutover); 42501: no CONNECT on the database (blocked); 3D000: the
        // database is gone from this server (a move kept it under another name).
        code.starts_with("28") || code == "42501" || code == "3D000"
    }))
}

/// Which tenant gives up its idle connections when a server's budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eviction {
    /// The least recently used tenant.
    Lru,
    /// The tenant borrowed from least often lately (counts halved every
    /// [`AGE_EVERY_BORROWS`] borrows), the least recently used among equals, and only for a
    /// tenant borrowed from at least as often, or one that waited [`RouterConfig::fair_wait`]
    /// (TinyLFU's admission): under skewed traffic it keeps the busy tenants' connections that
    /// least-recently-used gives away for a one-off borrow (0.93x of the optimal hit rate
    /// against 0.50x, docs/performance.md).
    #[default]
    Frequency,
}

/// Borrows between two halvings of every tenant's use count (see [`Eviction::Frequency`]).
pub const AGE_EVERY_BORROWS: u64 = 4096;

/// What a router did since it started: borrows, and how many opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterStats {
    /// Connections handed out (every `get` that succeeded).
    pub borrows: u64,
    /// Connections opened to a server (each a backend start and a login).
    pub connections_opened: u64,
    /// Idle connections closed to make room for another tenant's.
    pub evictions: u64,
}

/// How a router behaves. The defaults suit a typical product service.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Most connections this process opens to one database server, over all its tenants.
    pub per_server_budget: usize,
    /// Which tenant's idle connections are closed when the budget is spent.
    pub eviction: Eviction,
    /// How long a borrower waits for a connection before [`RouterError::PoolTimeout`].
    pub acquire_timeout: Duration,
    /// When a server's budget is spent, busy tenants keep one connection each, and under
    /// [`Eviction::Frequency`] a rarely used tenant's borrower gets only the idle connection of
    /// a tenant used as rarely; once a borrower has waited this long, it gets any idle
    /// connection, and busy tenants give up even their last one to it. Shorter is fairer;
    /// longer keeps busy tenants' connections open (see docs/performance.md, "The router under
    /// skew").
    pub fair_wait: Duration,
    /// A tenant pool unused this long is closed.
    pub idle_timeout: Duration,
    /// Resolutions older than this are asked again (the change feed invalidates sooner).
    pub cache_ttl: Duration,
    /// Follow the registry's change feed, so suspensions are refused within a second or two.
    pub watch_changes: bool,
    /// How often [`crate::Quotas::increment`]'s counts are sent to the registry.
    pub quota_flush_interval: Duration,
    /// How long an organization the registry does not know is answered "unknown" without
    /// asking again (an onboarding reported by the change feed ends it sooner): requests naming
    /// random organizations cost the registry one call each per this period at most.
    pub unknown_ttl: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            per_server_budget: 40,
            eviction: Eviction::default(),
            acquire_timeout: Duration::from_secs(5),
            fair_wait: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(300),
            cache_ttl: Duration::from_secs(60),
            watch_changes: true,
            quota_flush_interval: Duration::from_secs(1),
            unknown_ttl: Duration::from_secs(5),
        }
    }
}

/// How often a borrower waiting for a unit of its server's budget looks for an idle connection
/// to close even when no borrowed one came back.
const IDLE_RECHECK: Duration = Duration::from_millis(200);

/// The most unknown organizations remembered; past it the oldest half are forgotten.
const UNKNOWN_KEPT: usize = 10_000;

/// A pooled connection to one tenant's database, as the tenant's role. Derefs to
/// [`tokio_postgres::Client`]; returned to its pool when dropped, or, when other tenants wait
/// for a connection to the same server, given up to them (see [`ServerBudget`]).
pub struct TenantClient {
    object: Option<deadpool::managed::Object<BudgetedManager>>,
    pool: TenantPool,
}

impl Deref for TenantClient {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.object.as_ref().expect("present until dropped")
    }
}

impl Drop for TenantClient {
    fn drop(&mut self) {
        drop(self.object.take());
        let budget = &self.pool.manager().budget;
        let Some(longest_wait) = budget.longest_wait() else {
            return;
        };
        let status = self.pool.status();
        if status.waiting == 0 {
            // Idle now: a waiter closes an idle connection, this or another, by the policy.
            budget.returned.notify_one();
        } else if status.size > 1 || longest_wait > self.pool.manager().fair_wait {
            // Under pressure a busy tenant keeps one connection, and only while no one else
            // has waited long: its own borrowers queue behind the others for a second one.
            close_one_idle(&self.pool);
        }
    }
}

/// Closes one of the pool's idle connections, if it has one; how many it closed.
fn close_one_idle(pool: &TenantPool) -> usize {
    let mut first = true;
    pool.retain(|_, _| !std::mem::take(&mut first))
        .removed
        .len()
}

/// One database server's connection budget, and the borrowers of other tenants waiting for a
/// unit of it. They queue on the semaphore in arrival order (tokio's is fair). A connection
/// coming back while they wait either goes to its own tenant's next borrower (a busy tenant
/// keeps one connection) or is closed, its unit going to the longest waiter; an idle one is
/// closed by the eviction policy when a waiter needs its unit.
pub struct ServerBudget {
    units: Arc<Semaphore>,
    /// When each waiting borrower started to wait, by arrival.
    waiters: Mutex<BTreeMap<u64, Instant>>,
    next_ticket: AtomicU64,
    returned: Notify,
}

impl ServerBudget {
    fn new(units: usize) -> Self {
        Self {
            units: Arc::new(Semaphore::new(units)),
            waiters: Mutex::new(BTreeMap::new()),
            next_ticket: AtomicU64::new(0),
            returned: Notify::new(),
        }
    }

    /// How long the longest waiter has waited; `None` when no one waits.
    fn longest_wait(&self) -> Option<Duration> {
        let waiters = self.waiters.lock().expect("waiters lock");
        waiters.first_key_value().map(|(_, since)| since.elapsed())
    }
}

/// A borrower among a server's waiters while it lives.
struct Waiting<'a> {
    budget: &'a ServerBudget,
    ticket: u64,
}

impl<'a> Waiting<'a> {
    fn new(budget: &'a ServerBudget) -> Self {
        let ticket = budget.next_ticket.fetch_add(1, Ordering::Relaxed);
        let mut waiters = budget.waiters.lock().expect("waiters lock");
        waiters.insert(ticket, Instant::now());
        Self { budget, ticket }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waiters = self.budget.waiters.lock().expect("waiters lock");
        waiters.remove(&self.ticket);
    }
}

type TenantPool = deadpool::managed::Pool<BudgetedManager>;

/// A connection holding one unit of its server's budget.
pub struct Connection {
    client: ClientWrapper,
    _permit: OwnedSemaphorePermit,
}

impl Deref for Connection {
    type Target = ClientWrapper;
    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

/// Routes tenants to pooled connections. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct TenantRouter {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: Arc<dyn Resolver>,
    config: RouterConfig,
    entries: Mutex<HashMap<OrgId, Entry>>,
    budgets: Mutex<HashMap<String, Arc<ServerBudget>>>,
    /// TLS connectors by mode and CA: building one parses the roots, so pools share them.
    connectors: Mutex<HashMap<(SslMode, Option<String>), MakeRustlsConnect>>,
    settings: SettingsCache,
    quotas: Arc<QuotaCounters>,
    /// Organizations the registry answered "unknown" for, and when.
    unknown: Mutex<HashMap<OrgId, Instant>>,
    borrows: AtomicU64,
    /// Lookups, which age the use counts.
    lookups: AtomicU64,
    connections_opened: AtomicU64,
    evictions: AtomicU64,
}

struct Entry {
    state: EntryState,
    /// What the registry answered, to tell a changed tenant from an unchanged one.
    info: ConnectionInfo,
    /// The tenant's kind and agency, for tenant contexts.
    place: TenantPlace,
    /// The agency changed since `place` was read (its status may have): read again before use.
    place_stale: bool,
    server: String,
    resolved_at: Instant,
    last_used: Instant,
    /// Borrows lately (halved every [`AGE_EVERY_BORROWS`] lookups of the router).
    uses: u32,
}

impl Entry {
    fn used(&mut self) {
        self.last_used = Instant::now();
        self.uses = self.uses.saturating_add(1);
    }
}

enum EntryState {
    Ready(TenantPool),
    /// Refused (suspended, deleted, not active): cached so a refused tenant costs no registry call.
    Refused(TenantStatus),
}

/// A cached place whose agency changed since it was read.
struct Stale;

fn place_of(info: &ConnectionInfo) -> TenantPlace {
    TenantPlace {
        kind: info.kind,
        parent_org_id: info.parent_org_id.clone(),
        agency_status: info.agency_status,
    }
}

impl TenantRouter {
    /// A router over `resolver`. Starts the change-feed follower and the idle-pool reaper; both
    /// stop when the last clone of the router is dropped.
    pub fn new(resolver: Arc<dyn Resolver>, config: RouterConfig) -> Self {
        let inner = Arc::new(Inner {
            resolver,
            config,
            entries: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            connectors: Mutex::new(HashMap::new()),
            settings: SettingsCache::default(),
            quotas: Arc::default(),
            unknown: Mutex::new(HashMap::new()),
            borrows: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        });
        if inner.config.watch_changes {
            tokio::spawn(follow_changes(Arc::downgrade(&inner)));
        }
        tokio::spawn(reap_idle(Arc::downgrade(&inner)));
        tokio::spawn(flush_quotas(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// Borrows a connection to the tenant's database. Suspended, deleted and unknown tenants are
    /// typed errors, never connections.
    pub async fn get(&self, org_id: &OrgId) -> Result<TenantClient, RouterError> {
        let started = Instant::now();
        let mut delay = LOGIN_RETRY_DELAY;
        let result = loop {
            match self.borrow(org_id).await {
                // Refused at login: the password was rotated, or the tenant suspended or being
                // moved (its cutover blocks it on the old server until the registry switches
                // it), since it was resolved. Resolve again and retry, a little later each
                // time, for as long as a borrower waits for a connection: the caller sees a
                // short wait, or the registry's answer (suspended) once it has one.
                Err(error)
                    if is_login_refusal(&error)
                        && started.elapsed() + delay < self.inner.config.acquire_timeout =>
                {
                    self.invalidate(org_id);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_LOGIN_RETRY_DELAY);
                    metrics::counter!("tenancy_router_login_retries_total").increment(1);
                }
                Err(error) => {
                    if is_login_refusal(&error) {
                        self.invalidate(org_id);
                    }
                    break Err(error);
                }
                Ok(client) => {
                    self.inner.borrows.fetch_add(1, Ordering::Relaxed);
                    break Ok(client);
                }
            }
        };
        metrics::histogram!("tenancy_router_wait_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    async fn borrow(&self, org_id: &OrgId) -> Result<TenantClient, RouterError> {
        let mut attempts = 0;
        loop {
            let pool = self.pool_for(org_id).await?;
            // While borrowers of other tenants wait for the server's budget, a tenant's next
            // borrower waits for its connection instead of opening a second one.
            let manager = pool.manager();
            let size = match manager.budget.longest_wait() {
                Some(_) => 1,
                None => manager.pool_size,
            };
            if pool.status().max_size != size {
                pool.resize(size);
            }
            match pool.get().await {
                // The pool was closed under us (the tenant changed, or was reaped): the next
                // resolution builds its replacement, or says why there is none.
                Err(PoolError::Closed) if attempts < 3 => attempts += 1,
                result => {
                    return result
                        .map(|object| TenantClient {
                            object: Some(object),
                            pool,
                        })
                        .map_err(|e| self.pool_error(org_id, e));
                }
            }
        }
    }

    fn pool_error(
        &self,
        org_id: &OrgId,
        error: deadpool::managed::PoolError<RouterError>,
    ) -> RouterError {
        match error {
            PoolError::Backend(e) => e,
            PoolError::Closed => RouterError::NotActive {
                org_id: org_id.clone(),
                status: TenantStatus::Suspended,
            },
            _ => RouterError::PoolTimeout {
                org_id: org_id.clone(),
                waited: self.inner.config.acquire_timeout,
            },
        }
    }

    async fn pool_for(&self, org_id: &OrgId) -> Result<TenantPool, RouterError> {
        if let Some(found) = self.cached(org_id) {
            metrics::counter!("tenancy_router_cache_total", "result" => "hit").increment(1);
            return found;
        }
        if self.known_unknown(org_id) {
            metrics::counter!("tenancy_router_cache_total", "result" => "unknown").increment(1);
            return Err(RouterError::UnknownTenant(org_id.clone()));
        }
        metrics::counter!("tenancy_router_cache_total", "result" => "miss").increment(1);
        let info = match self.inner.resolver.resolve(org_id).await {
            Err(RouterError::UnknownTenant(unknown)) => {
                self.remember_unknown(&unknown);
                return Err(RouterError::UnknownTenant(unknown));
            }
            other => other?,
        };
        let server = format!("{}:{}", info.host, info.port);
        let mut entries = self.inner.entries.lock().expect("entries lock");
        let now = Instant::now();
        let ttl = self.inner.config.cache_ttl;
        let entry = match entries.get_mut(org_id) {
            // Another borrower resolved it meanwhile: keep theirs, so there is one pool.
            Some(entry) if entry.resolved_at.elapsed() <= ttl => entry,
            // Resolved again after `cache_ttl` and unchanged: the pool and its connections stay.
            Some(entry) if entry.info == info && matches!(entry.state, EntryState::Ready(_)) => {
                entry.resolved_at = now;
                entry
            }
            _ => {
                let state = match (info.status, &info.password) {
                    (TenantStatus::Active, Some(_)) => {
                        EntryState::Ready(self.build_pool(&info, &server)?)
                    }
                    (status, _) => EntryState::Refused(status),
                };
                let replaced = entries.insert(
                    org_id.clone(),
                    Entry {
                        state,
                        place: place_of(&info),
                        place_stale: false,
                        info,
                        server,
                        resolved_at: now,
                        last_used: now,
                        uses: 0,
                    },
                );
                if let Some(Entry {
                    state: EntryState::Ready(old),
                    ..
                }) = replaced
                {
                    old.close();
                }
                metrics::gauge!("tenancy_router_pools").set(entries.len() as f64);
                entries.get_mut(org_id).expect("just inserted")
            }
        };
        entry.used();
        match &entry.state {
            EntryState::Ready(pool) => Ok(pool.clone()),
            EntryState::Refused(status) => Err(RouterError::for_status(org_id, *status)),
        }
    }

    /// Whether the registry answered "unknown" for the organization lately.
    fn known_unknown(&self, org_id: &OrgId) -> bool {
        let unknown = self.inner.unknown.lock().expect("unknown lock");
        unknown
            .get(org_id)
            .is_some_and(|at| at.elapsed() < self.inner.config.unknown_ttl)
    }

    fn remember_unknown(&self, org_id: &OrgId) {
        let mut unknown = self.inner.unknown.lock().expect("unknown lock");
        if unknown.len() >= UNKNOWN_KEPT {
            let ttl = self.inner.config.unknown_ttl;
            unknown.retain(|_, at| at.elapsed() < ttl);
            if unknown.len() >= UNKNOWN_KEPT {
                unknown.clear();
            }
        }
        unknown.insert(org_id.clone(), Instant::now());
    }

    fn cached(&self, org_id: &OrgId) -> Option<Result<TenantPool, RouterError>> {
        let mut entries = self.inner.entries.lock().expect("entries lock");
        let entry = entries.get_mut(org_id)?;
        if entry.resolved_at.elapsed() > self.inner.config.cache_ttl {
            // Resolved again by the caller; the pool stays if nothing changed.
            return None;
        }
        entry.used();
        let state = match &entry.state {
            EntryState::Ready(pool) => Ok(pool.clone()),
            EntryState::Refused(status) => Err(RouterError::for_status(org_id, *status)),
        };
        // Counts age, so that the tenants busy now, not once, keep their connections.
        let lookups = self.inner.lookups.fetch_add(1, Ordering::Relaxed) + 1;
        if lookups.is_multiple_of(AGE_EVERY_BORROWS) {
            for entry in entries.values_mut() {
                entry.uses /= 2;
            }
        }
        Some(state)
    }

    fn connector(
        &self,
        info: &ConnectionInfo,
        server: &str,
    ) -> Result<MakeRustlsConnect, RouterError> {
        let key = (info.sslmode, info.ca_pem.clone());
        let mut connectors = self.inner.connectors.lock().expect("connectors lock");
        if let Some(connector) = connectors.get(&key) {
            return Ok(connector.clone());
        }
        let connector =
            tenancy_pgtls::connector(info.sslmode, info.ca_pem.as_deref()).map_err(|e| {
                RouterError::Tls {
                    server: server.to_owned(),
                    detail: e.to_string(),
                }
            })?;
        connectors.insert(key, connector.clone());
        Ok(connector)
    }

    fn build_pool(&self, info: &ConnectionInfo, server: &str) -> Result<TenantPool, RouterError> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&info.host)
            .port(info.port)
            .user(info.user.as_str())
            .password(info.password.as_deref().unwrap_or_default())
            .dbname(info.dbname.as_str())
            .application_name("tenancy-router")
            .connect_timeout(Duration::from_secs(5))
            .ssl_mode(tenancy_pgtls::tokio_ssl_mode(info.sslmode));
        let tls = self.connector(info, server)?;
        let budget = self
            .inner
            .budgets
            .lock()
            .expect("budgets lock")
            .entry(server.to_owned())
            .or_insert_with(|| Arc::new(ServerBudget::new(self.inner.config.per_server_budget)))
            .clone();
        let manager = BudgetedManager {
            inner: deadpool_postgres::Manager::from_config(
                pg,
                tls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            ),
            budget,
            server: server.to_owned(),
            org_id: info.org_id.clone(),
            router: Arc::downgrade(&self.inner),
            acquire_timeout: self.inner.config.acquire_timeout,
            fair_wait: self.inner.config.fair_wait,
            pool_size: info.pool_size.max(1) as usize,
        };
        let pool_size = manager.pool_size;
        TenantPool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(self.inner.config.acquire_timeout))
            .create_timeout(Some(
                self.inner.config.acquire_timeout + Duration::from_secs(5),
            ))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| RouterError::Registry(format!("building a pool: {e}")))
    }

    /// The tenant's kind and agency, as resolved (and cached with its connection settings):
    /// what a [`tenancy_zitadel::TenantContext`] is decided from. A suspended tenant still has
    /// one; an unknown tenant is [`RouterError::UnknownTenant`].
    pub async fn place(&self, org_id: &OrgId) -> Result<TenantPlace, RouterError> {
        match self.cached_place(org_id) {
            Some(Ok(place)) => return Ok(place),
            Some(Err(Stale)) => {
                let place = place_of(&self.inner.resolver.resolve(org_id).await?);
                let mut entries = self.inner.entries.lock().expect("entries lock");
                if let Some(entry) = entries.get_mut(org_id) {
                    entry.place = place.clone();
                    entry.place_stale = false;
                }
                return Ok(place);
            }
            None => {}
        }
        match self.pool_for(org_id).await {
            Ok(_)
            | Err(
                RouterError::Suspended(_) | RouterError::Deleted(_) | RouterError::NotActive { .. },
            ) => {}
            Err(other) => return Err(other),
        }
        match self.cached_place(org_id) {
            Some(Ok(place)) => Ok(place),
            _ => Err(RouterError::UnknownTenant(org_id.clone())),
        }
    }

    /// The cached place, `Err(Stale)` when its agency changed since it was read.
    fn cached_place(&self, org_id: &OrgId) -> Option<Result<TenantPlace, Stale>> {
        let entries = self.inner.entries.lock().expect("entries lock");
        entries
            .get(org_id)
            .filter(|entry| entry.resolved_at.elapsed() <= self.inner.config.cache_ttl)
            .map(|entry| {
                if entry.place_stale {
                    Err(Stale)
                } else {
                    Ok(entry.place.clone())
                }
            })
    }

    /// An agency's clients (every status), from the registry, uncached.
    pub async fn clients(&self, agency: &OrgId) -> Result<Vec<Tenant>, RouterError> {
        self.inner.resolver.clients(agency).await
    }

    /// Forgets a tenant: its pool is closed (idle connections at once, borrowed ones when they
    /// come back) and the next borrow resolves it again.
    pub fn invalidate(&self, org_id: &OrgId) {
        self.inner.invalidate(org_id);
    }

    /// The tenant's settings (secrets in plain text; the router's token holds `tenant_router`)
    /// and features, cached until the change feed reports the tenant or `cache_ttl` passes.
    pub async fn settings(&self, org_id: &OrgId) -> Result<Arc<TenantSettings>, RouterError> {
        let cache = &self.inner.settings;
        if let Some(found) = cache.get(org_id, self.inner.config.cache_ttl) {
            return Ok(found);
        }
        let epoch = cache.epoch();
        let (settings, features) = self.inner.resolver.settings(org_id).await?;
        let settings = Arc::new(TenantSettings::new(settings, features));
        cache.insert(org_id, epoch, settings.clone());
        Ok(settings)
    }

    /// The tenant's effective features (its tier's, with its overrides).
    pub async fn features(&self, org_id: &OrgId) -> Result<EffectiveFeatures, RouterError> {
        Ok(self.settings(org_id).await?.features.clone())
    }

    /// The tenant's product quotas: `router.quotas(&org).increment("api_calls", 1)`.
    pub fn quotas(&self, org_id: &OrgId) -> Quotas {
        Quotas {
            org_id: org_id.clone(),
            resolver: self.inner.resolver.clone(),
            counters: self.inner.quotas.clone(),
        }
    }

    /// Sends what [`Quotas::increment`] counted to the registry now (before shutting down).
    pub async fn flush_quotas(&self) {
        crate::quotas::flush(&*self.inner.resolver, &self.inner.quotas).await;
    }

    /// Borrows, connections opened and evictions since the router started.
    pub fn stats(&self) -> RouterStats {
        RouterStats {
            borrows: self.inner.borrows.load(Ordering::Relaxed),
            connections_opened: self.inner.connections_opened.load(Ordering::Relaxed),
            evictions: self.inner.evictions.load(Ordering::Relaxed),
        }
    }

    /// Connections this process holds to each server, for metrics and tests.
    pub fn connections_per_server(&self) -> HashMap<String, usize> {
        let budget = self.inner.config.per_server_budget;
        self.inner
            .budgets
            .lock()
            .expect("budgets lock")
            .iter()
            .map(|(server, b)| (server.clone(), budget - b.units.available_permits()))
            .collect()
    }
}

impl Inner {
    /// Forgets every tenant (the change feed restarted: anything cached may be stale).
    fn invalidate_all(&self) {
        self.settings.clear();
        self.unknown.lock().expect("unknown lock").clear();
        let entries = std::mem::take(&mut *self.entries.lock().expect("entries lock"));
        for entry in entries.into_values() {
            if let EntryState::Ready(pool) = entry.state {
                pool.close();
            }
        }
    }

    /// Forgets a tenant, and its clients' places (an agency's status is part of them).
    fn invalidate(&self, org_id: &OrgId) {
        self.settings.invalidate(org_id);
        self.unknown.lock().expect("unknown lock").remove(org_id);
        let mut entries = self.entries.lock().expect("entries lock");
        if let Some(entry) = entries.remove(org_id)
            && let EntryState::Ready(pool) = entry.state
        {
            pool.close();
        }
        for entry in entries.values_mut() {
            if entry.place.parent_org_id.as_ref() == Some(org_id) {
                entry.place_stale = true;
            }
        }
    }

    /// Closes one idle connection of another tenant on `server`, chosen by the eviction
    /// policy, for a borrower of `waiting`; false when no tenant there has an idle connection
    /// the policy gives up. Under [`Eviction::Frequency`] a connection goes only to a tenant
    /// borrowed from at least as often as its own (TinyLFU's admission), or to a borrower that
    /// `waited_long`.
    fn evict_idle(&self, server: &str, waiting: &OrgId, waited_long: bool) -> bool {
        let entries = self.entries.lock().expect("entries lock");
        let admit_up_to = match self.config.eviction {
            Eviction::Frequency if !waited_long => entries.get(waiting).map_or(0, |e| e.uses),
            _ => u32::MAX,
        };
        let candidates = entries
            .iter()
            .filter(|(org, e)| *org != waiting && e.server == server && e.uses <= admit_up_to)
            .filter_map(|(_, e)| match &e.state {
                EntryState::Ready(pool) if pool.status().available > 0 => Some((e, pool)),
                _ => None,
            });
        let victim = match self.config.eviction {
            Eviction::Lru => candidates.min_by_key(|(e, _)| e.last_used),
            Eviction::Frequency => candidates.min_by_key(|(e, _)| (e.uses, e.last_used)),
        }
        .map(|(_, pool)| pool.clone());
        drop(entries);
        let Some(pool) = victim else {
            return false;
        };
        let removed = close_one_idle(&pool);
        metrics::counter!("tenancy_router_evictions_total").increment(removed as u64);
        self.evictions.fetch_add(removed as u64, Ordering::Relaxed);
        removed > 0
    }
}

/// deadpool-postgres's manager, with each new connection taking a unit of its server's budget
/// (evicting other tenants' idle connections, or waiting a bounded time, when none is free).
pub struct BudgetedManager {
    inner: deadpool_postgres::Manager,
    budget: Arc<ServerBudget>,
    server: String,
    org_id: OrgId,
    router: Weak<Inner>,
    acquire_timeout: Duration,
    fair_wait: Duration,
    /// The tier's pool size: the most connections the tenant holds while the budget has room.
    pool_size: usize,
}

impl BudgetedManager {
    /// A unit of the server's budget: a free one, or, after closing another tenant's idle
    /// connection, the next one in arrival order.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, RouterError> {
        let units = &self.budget.units;
        if let Ok(permit) = units.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = Waiting::new(&self.budget);
        // Held across the whole wait, so this borrower keeps its place in the queue.
        let queued = units.clone().acquire_owned();
        tokio::pin!(queued);
        let deadline = tokio::time::sleep(self.acquire_timeout);
        tokio::pin!(deadline);
        // A waiter closes one idle connection when it starts waiting and one for each idle
        // return it is woken for (one waiter per return): the unit each frees goes to the
        // longest waiter. Looking again on a timer only until it has made room keeps the
        // waiters from closing every idle connection over and over for the same line.
        let mut made_room = false;
        // Past `fair_wait`, this borrower's tenant is admitted whatever its use count.
        let admitted = tokio::time::sleep(self.fair_wait);
        tokio::pin!(admitted);
        let mut waited_long = false;
        loop {
            if !made_room && let Some(router) = self.router.upgrade() {
                made_room = router.evict_idle(&self.server, &self.org_id, waited_long);
            }
            tokio::select! {
                biased;
                permit = &mut queued => return Ok(permit.expect("budgets are never closed")),
                () = &mut deadline => {
                    return Err(RouterError::PoolTimeout {
                        org_id: self.org_id.clone(),
                        waited: self.acquire_timeout,
                    });
                }
                () = &mut admitted, if !waited_long => waited_long = true,
                // A connection went back idle: make room with it, or another idle one.
                () = self.budget.returned.notified() => made_room = false,
                // A connection returned idle before this borrower queued announced nothing.
                () = tokio::time::sleep(IDLE_RECHECK), if !made_room => {}
            }
        }
    }
}

impl deadpool::managed::Manager for BudgetedManager {
    type Type = Connection;
    type Error = RouterError;

    async fn create(&self) -> Result<Connection, RouterError> {
        let permit = self.permit().await?;
        let client = deadpool::managed::Manager::create(&self.inner)
            .await
            .map_err(|source| RouterError::ServerUnavailable {
                server: self.server.clone(),
                source,
            })?;
        debug!(org_id = %self.org_id, server = %self.server, "connection opened");
        if let Some(router) = self.router.upgrade() {
            router.connections_opened.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Connection {
            client,
            _permit: permit,
        })
    }

    async fn recycle(
        &self,
        connection: &mut Connection,
        metrics: &Metrics,
    ) -> RecycleResult<RouterError> {
        // Broken connections are discarded, never handed out again.
        deadpool::managed::Manager::recycle(&self.inner, &mut connection.client, metrics)
            .await
            .map_err(|e| match e {
                RecycleError::Backend(source) => {
                    RecycleError::Backend(RouterError::ServerUnavailable {
                        server: self.server.clone(),
                        source,
                    })
                }
                RecycleError::Message(message) => RecycleError::Message(message),
            })
    }
}

/// Follows the change feed and forgets every tenant that changed; a suspension or deletion is
/// refused as soon as the feed reports it.
async fn follow_changes(inner: Weak<Inner>) {
    let mut after = 0;
    loop {
        let Some(router) = inner.upgrade() else {
            return;
        };
        let resolver = router.resolver.clone();
        drop(router);
        match resolver.changes(after, Duration::from_secs(25)).await {
            Ok(feed) => {
                let Some(router) = inner.upgrade() else {
                    return;
                };
                if feed.reset {
                    warn!(
                        after,
                        last_seq = feed.last_seq,
                        "the registry's change feed restarted: dropping every cached tenant"
                    );
                    router.invalidate_all();
                }
                for change in &feed.changes {
                    router.invalidate(&change.org_id);
                }
                after = feed.last_seq;
            }
            Err(e) => {
                warn!(error = %e, "change feed unavailable; relying on the cache TTL");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Sends in-memory quota counts to the registry every `quota_flush_interval`.
async fn flush_quotas(inner: Weak<Inner>) {
    loop {
        let interval = match inner.upgrade() {
            Some(router) => router.config.quota_flush_interval,
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(router) = inner.upgrade() else {
            return;
        };
        crate::quotas::flush(&*router.resolver, &router.quotas).await;
    }
}

/// Closes pools no one borrowed from for `idle_timeout`, and publishes gauges.
async fn reap_idle(inner: Weak<Inner>) {
    loop {
        let interval = match inner.upgrade() {
            Some(router) => (router.config.idle_timeout / 4).max(Duration::from_millis(100)),
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(router) = inner.upgrade() else {
            return;
        };
        let idle_timeout = router.config.idle_timeout;
        let mut entries = router.entries.lock().expect("entries lock");
        entries.retain(|_, entry| {
            let keep = entry.last_used.elapsed() < idle_timeout;
            if let (false, EntryState::Ready(pool)) = (keep, &entry.state) {
                pool.close();
            }
            keep
        });
        metrics::gauge!("tenancy_router_pools").set(entries.len() as f64);
        drop(entries);
        let budget = router.config.per_server_budget;
        for (server, b) in router.budgets.lock().expect("budgets lock").iter() {
            metrics::gauge!("tenancy_router_connections", "server" => server.clone())
                .set((budget - b.units.available_permits()) as f64);
        }
    }
}
