//! The engine: the facade the registry service and `tenantctl` call. Split by concern:
//!
//! - `tenants`: onboarding and the tenant lifecycle (each change queues an operation);
//! - `operations`: reading operations and waiting for them;
//! - `feed`: the long-poll change feed, and the listener that relays the registry's
//!   notifications (queued operations wake workers, finished ones wake waiters, tenant changes
//!   wake long polls);
//! - `quotas`: product quotas (counting usage, checking, the usage log);
//! - `settings`: per-tenant settings (secrets sealed) and features;
//! - `servers`: database servers (list, add, drain, the configuration file's servers);
//! - `observe`: what services and operators read (connection info, usage, health, audit,
//!   metrics);
//! - `moves`: moving tenants between servers, and the plans of a drain or a rebalance;
//! - `fleet`: fleet migrations (every tenant database to a template version), versions, drift;
//! - `tiers`: the configuration's tiers rolled out to their tenants;
//! - `warm_pool`: keeping spare clones ready on each server;
//! - `usage`: usage figures and history, and the sampler that enforces storage quotas;
//! - `background`: workers, the listener and the maintenance loop (purge, reconcile).
//!
//! The engine owns the parts; workers get a narrow [`crate::worker::WorkerContext`] and the
//! reconciler the store and the admin connections, never the engine itself.

mod archive;
mod background;
mod backups;
mod console;
mod feed;
pub mod fleet;
mod moves;
mod observe;
mod operations;
mod quotas;
mod servers;
mod settings;
mod tenants;
mod tiers;
mod usage;
mod warm_pool;

use std::sync::{Arc, OnceLock};

use secrecy::ExposeSecret;
use tokio::sync::{Notify, broadcast};
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::activator::AdminActivator;
use crate::admins::ServerAdmins;
use crate::config::Config;
use crate::error::ControlError;
use crate::migrate;
use crate::secrets::Keyring;
use crate::store::{Actor, LockName, RegistryLock, Store};

pub use background::Workers;
pub use backups::{BackupRound, Export, MAX_BACKUP_PAGE};
pub use moves::{Balance, PlannedMove};
pub use servers::password_env_of;
pub use settings::{Authority, Secrets};
pub use tiers::{TierRollout, TierStatus};

pub use tenants::{Onboarded, Rekeyed};
pub use usage::SampleRound;
pub use warm_pool::Refill;

/// The control plane's engine. Cheap to clone; every clone shares the same pools.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    keyring: Keyring,
    /// Where tenant backups are kept.
    backups: crate::backups::BackupStore,
    store: Store,
    admins: ServerAdmins,
    signals: Arc<Signals>,
    /// Password verifiers the reconciler already checked.
    checks: crate::reconcile::PasswordChecks,
    /// Invites organizations' first admins (set by the registry when ZITADEL is configured).
    activator: OnceLock<Arc<dyn AdminActivator>>,
    /// Unique per engine instance; worker names derive from it.
    instance: String,
    /// Runs operations for the requests that wait for them, while the workers run.
    runner: std::sync::Mutex<Option<Arc<background::Runner>>>,
    /// Tenant admins' settings writes, per tenant (`settings.tenant_writes_per_minute`).
    tenant_setting_writes: governor::DefaultKeyedRateLimiter<tenancy_core::OrgId>,
    /// Consulted around every step by this engine's workers (crash tests).
    #[cfg(feature = "testing")]
    faults: OnceLock<Arc<dyn crate::faults::FaultInjector>>,
}

/// What the registry's notifications wake.
struct Signals {
    /// Idle workers, when an operation is queued.
    wake: Arc<Notify>,
    /// Waiters, with the id of each operation that finished.
    done: broadcast::Sender<Uuid>,
    /// Change-feed long polls, when a tenant change is committed.
    tenant_changed: Notify,
}

impl Engine {
    /// For the registry service: migrates the registry database, records the configuration
    /// file's servers, and prepares each one (template created and migrated). Start the workers
    /// with [`Engine::run_workers`].
    pub async fn start(config: Config) -> Result<Self, ControlError> {
        config.validate()?;
        config.keyring()?;
        migrate::migrate_registry(config.registry.url.expose_secret()).await?;
        let engine = Self::open(config).await?;
        engine.check_tiers_in_use().await?;
        engine
            .inner
            .store
            .apply_configured_servers(&engine.inner.config.servers, &Actor::system())
            .await?;
        engine.prepare_servers().await?;
        // Before any worker or request of this process: a tenant onboarded meanwhile would get
        // a needless retier.
        engine.roll_out_tiers().await?;
        Ok(engine)
    }

    /// As [`Engine::start`], with a fault injector its workers consult around every step.
    #[cfg(feature = "testing")]
    pub async fn start_with_faults(
        config: Config,
        faults: Arc<dyn crate::faults::FaultInjector>,
    ) -> Result<Self, ControlError> {
        let engine = Self::start(config).await?;
        let _ = engine.inner.faults.set(faults);
        Ok(engine)
    }

    /// For tools (`tenantctl`): connects to an already migrated registry and changes nothing,
    /// neither the registry's schema nor its servers nor any database server.
    pub async fn connect(config: Config) -> Result<Self, ControlError> {
        config.validate()?;
        let engine = Self::open(config).await?;
        let latest = migrate::latest_registry_version();
        match engine.inner.store.schema_version().await? {
            Some(version) if version >= latest => Ok(engine),
            found => Err(ControlError::Config(format!(
                "the registry database is at migration {} and this tool needs {latest}: start the \
                 registry service (it migrates its database) before using this tool",
                found.map_or_else(|| "none".to_owned(), |v| v.to_string())
            ))),
        }
    }

    async fn open(config: Config) -> Result<Self, ControlError> {
        let keyring = config.keyring()?;
        let store = Store::connect(
            config.registry.url.expose_secret(),
            config.registry.max_connections,
        )
        .await?;
        let admins = ServerAdmins::new(store.clone(), &config);
        let backups = crate::backups::BackupStore::open(&config.backups)?;
        let (done, _) = broadcast::channel(1024);
        let tenant_writes = std::num::NonZeroU32::new(config.settings.tenant_writes_per_minute)
            .unwrap_or(std::num::NonZeroU32::MIN);
        Ok(Engine {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                keyring,
                backups,
                store,
                admins,
                signals: Arc::new(Signals {
                    wake: Arc::new(Notify::new()),
                    done,
                    tenant_changed: Notify::new(),
                }),
                checks: Default::default(),
                activator: OnceLock::new(),
                runner: Default::default(),
                tenant_setting_writes: governor::RateLimiter::keyed(governor::Quota::per_minute(
                    tenant_writes,
                )),
                instance: format!(
                    "{}-{}",
                    std::process::id(),
                    &Uuid::new_v4().simple().to_string()[..8]
                ),
                #[cfg(feature = "testing")]
                faults: OnceLock::new(),
            }),
        })
    }

    /// Creates and migrates `tenant_template` on every server that is not disabled. A server
    /// that cannot be prepared is logged and skipped: its operations retry until it can.
    async fn prepare_servers(&self) -> Result<(), ControlError> {
        let target = self.inner.config.engine.template_version;
        let servers = self.inner.store.servers().await?;
        let prepared = servers
            .iter()
            .filter(|s| s.state != tenancy_core::ServerState::Disabled)
            .map(|server| async move {
                let result = match self.inner.admins.get(&server.id).await {
                    Ok(admin) => admin.prepare(target).await,
                    Err(e) => Err(e),
                };
                (server.id.clone(), result)
            });
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
        if self.inner.activator.set(activator).is_err() {
            warn!("admin activator already set; the first one stays");
        }
    }

    /// The admin connections of every database server.
    pub fn admins(&self) -> &ServerAdmins {
        &self.inner.admins
    }

    /// Takes the registry-wide lock `name` if no replica or tool holds it.
    pub async fn try_lock(&self, name: &LockName) -> Result<Option<RegistryLock>, ControlError> {
        self.inner.store.try_lock(name).await
    }

    /// A secret for `purpose`, derived from the current master key (the registry's ids of the
    /// organizations it creates, say). It changes when the master key does.
    pub fn derived_secret(&self, purpose: &str) -> [u8; 32] {
        self.inner.keyring.current().derive(purpose)
    }

    /// The master keys tenant passwords derive from.
    pub(crate) fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// The reconciler over this engine's parts.
    pub(crate) fn reconciler(&self) -> crate::reconcile::Reconciler<'_> {
        crate::reconcile::Reconciler {
            store: self.store(),
            admins: self.admins(),
            config: self.config(),
            keyring: self.keyring(),
            backups: &self.inner.backups,
            checks: &self.inner.checks,
            #[cfg(feature = "testing")]
            faults: self.inner.faults.get(),
        }
    }

    /// Whether the registry database answers and is migrated (readiness).
    pub async fn ready(&self) -> Result<bool, ControlError> {
        Ok(self
            .inner
            .store
            .schema_version()
            .await?
            .is_some_and(|v| v >= migrate::latest_registry_version()))
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }
}
