//! One TOML file for the registry service and `tenantctl`, with environment overrides
//! (`TENANCY_ENGINE__WORKERS=8` sets `engine.workers`). Secrets never live in the file: the
//! registry URL may come from `TENANCY_REGISTRY__URL`, server passwords and the master key from the
//! environment variables the file names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;
use tenancy_core::{
    FeatureName, QuotaName, QuotaPeriod, Region, ServerId, ServerState, SslMode, Tier,
};

use crate::error::ControlError;
use crate::secrets::{Keyring, MasterKey};

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub registry: RegistryConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    /// Region used when a create request names none; the first server's region when unset.
    #[serde(default)]
    pub default_region: Option<Region>,
    /// The tiers tenants may have, by name; a tenant's tier must be one of them.
    #[serde(default = "default_tiers")]
    pub tiers: BTreeMap<Tier, TierLimits>,
    /// The tier of a tenant created without one; must be in `tiers`.
    #[serde(default = "default_tier")]
    pub default_tier: Tier,
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    #[serde(default)]
    pub usage: UsageConfig,
    #[serde(default)]
    pub warm_pool: WarmPoolConfig,
    #[serde(default)]
    pub moves: MovesConfig,
}

/// Moving tenants between servers (`POST /v1/tenants/{org_id}/move`, `tenantctl tenants move`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovesConfig {
    /// Where `pg_dump` and `pg_restore` are; the `PATH`, then the newest
    /// `/usr/lib/postgresql/*/bin`, when unset.
    #[serde(default)]
    pub pg_bin_dir: Option<std::path::PathBuf>,
    /// An online move cuts over once the target is this close behind the source (WAL bytes).
    #[serde(default = "default_cutover_lag")]
    pub cutover_lag: bytesize::ByteSize,
    /// How long an online move's initial copy and catch-up may take before the step is retried.
    #[serde(default = "default_catch_up_timeout", with = "humantime_serde")]
    pub catch_up_timeout: Duration,
    /// How long the cutover waits for the target to apply the source's last changes (the
    /// tenant is blocked meanwhile) before the step is retried.
    #[serde(default = "default_cutover_timeout", with = "humantime_serde")]
    pub cutover_timeout: Duration,
}

impl Default for MovesConfig {
    fn default() -> Self {
        Self {
            pg_bin_dir: None,
            cutover_lag: default_cutover_lag(),
            catch_up_timeout: default_catch_up_timeout(),
            cutover_timeout: default_cutover_timeout(),
        }
    }
}

fn default_cutover_lag() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(16)
}

fn default_catch_up_timeout() -> Duration {
    Duration::from_secs(3600)
}

fn default_cutover_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The warm pool: databases cloned from the template ahead of demand, so that onboarding is a
/// rename, a role and a few grants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmPoolConfig {
    /// Spare databases kept on each active server (a server's `warm_pool` overrides it); 0 turns
    /// the pool off.
    #[serde(default)]
    pub size: u32,
    /// How often the pool is refilled.
    #[serde(default = "default_refill_interval", with = "humantime_serde")]
    pub refill_interval: Duration,
    /// Spares cloned at once on one server. One by default: a refill's clones queue behind each
    /// other instead of together competing with onboarding for the server's I/O.
    #[serde(default = "default_clones_at_once")]
    pub clones_at_once: u32,
}

impl Default for WarmPoolConfig {
    fn default() -> Self {
        Self {
            size: 0,
            refill_interval: default_refill_interval(),
            clones_at_once: default_clones_at_once(),
        }
    }
}

fn default_clones_at_once() -> u32 {
    1
}

fn default_refill_interval() -> Duration {
    Duration::from_secs(2)
}

impl Config {
    /// Spare databases to keep on `server` (configured servers may override the size; servers
    /// registered through the API take the default).
    pub fn warm_pool_size(&self, server: &ServerId) -> u32 {
        self.servers
            .iter()
            .find(|s| &s.id == server)
            .and_then(|s| s.warm_pool)
            .unwrap_or(self.warm_pool.size)
    }

    /// Whether any server keeps spares.
    pub fn warm_pool_on(&self) -> bool {
        self.warm_pool.size > 0 || self.servers.iter().any(|s| s.warm_pool.unwrap_or(0) > 0)
    }
}

/// The usage sampler: every tenant's database size and sessions, which enforce storage quotas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageConfig {
    /// How often each server is sampled (one query per server per round).
    #[serde(default = "default_sample_interval", with = "humantime_serde")]
    pub sample_interval: Duration,
    /// How long samples are kept.
    #[serde(default = "default_usage_keep", with = "humantime_serde")]
    pub keep: Duration,
    /// Where storage warnings (80%, 95%) are also posted, signed with HMAC-SHA256; none when
    /// unset. `https://` (plain `http://` only to a loopback host).
    #[serde(default)]
    pub warning_webhook_url: Option<String>,
    /// The environment variable holding the webhook's signing secret (required with the URL).
    #[serde(default)]
    pub warning_webhook_secret_env: Option<String>,
    /// The signing secret, read from `warning_webhook_secret_env` at load.
    #[serde(skip)]
    pub warning_webhook_secret: Option<SecretString>,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            sample_interval: default_sample_interval(),
            keep: default_usage_keep(),
            warning_webhook_url: None,
            warning_webhook_secret_env: None,
            warning_webhook_secret: None,
        }
    }
}

/// A webhook URL: `https://`, or `http://` to a loopback host (a local relay).
fn check_webhook_url(url: &str) -> Result<(), ControlError> {
    let refused =
        |why: &str| ControlError::Config(format!("usage.warning_webhook_url {url:?}: {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|e| refused(&e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| refused("no host"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if tenancy_core::is_loopback_host(host) => Ok(()),
        _ => Err(refused(
            "must be https:// (http:// only to a loopback host)",
        )),
    }
}

fn default_sample_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_usage_keep() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `postgres://user:password@host:port/tenancy_registry`.
    pub url: SecretString,
    #[serde(default = "default_registry_pool")]
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Operation workers in this process. Several processes may run side by side.
    pub workers: usize,
    /// How long a claimed operation stays ours without a heartbeat; a worker that dies is taken
    /// over by another after this.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Fallback poll when no notification arrives.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Attempts of one operation before it is marked failed (retry resets the count).
    pub max_attempts: i32,
    /// Attempts of an admin activation: it waits out identity-provider outages, so it gets
    /// more (with the backoff capped at `backoff_max`, 30 attempts last about two hours).
    pub admin_activation_attempts: i32,
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// How long a deleted tenant's database is kept before it is dropped.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How often the reconciler compares the registry with the servers (and purges expired tenants).
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Version the engine migrates templates to when it starts; the latest when unset. Pin it to
    /// roll a new migration out with `tenantctl migrate` (canaries first) instead of at deploy.
    pub template_version: Option<i32>,
    /// The environment variable holding the master key tenant role passwords are derived from
    /// (at least 32 bytes).
    pub master_key_env: String,
    /// Set from `master_key_env` when the configuration is loaded, or directly by embedders.
    #[serde(skip)]
    pub master_key: Option<SecretString>,
    /// While the master key is rotated: the variable holding the previous one, so tenants not
    /// yet re-keyed (`tenantctl rekey`) keep working.
    pub previous_master_key_env: Option<String>,
    /// Set from `previous_master_key_env` when the configuration is loaded.
    #[serde(skip)]
    pub previous_master_key: Option<SecretString>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            max_attempts: 8,
            admin_activation_attempts: 30,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            retention: Duration::from_secs(7 * 24 * 3600),
            reconcile_interval: Duration::from_secs(300),
            master_key_env: "TENANCY_MASTER_KEY".into(),
            master_key: None,
            previous_master_key_env: None,
            previous_master_key: None,
            template_version: None,
        }
    }
}

/// What a tier gives its tenants: limits on the tenant role (applied at provisioning and by
/// re-tiering) and router pools, a storage quota, product quotas, retention and features.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// `CONNECTION LIMIT` of the tenant role, over all services.
    pub connection_limit: i32,
    /// The role's `statement_timeout`.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// The role's `idle_in_transaction_session_timeout`; unset is PostgreSQL's (none).
    #[serde(default, with = "humantime_serde")]
    pub idle_in_transaction_timeout: Option<Duration>,
    /// The role's `temp_file_limit` (`"1 GiB"`); unset is PostgreSQL's (none).
    #[serde(default)]
    pub temp_file_limit: Option<bytesize::ByteSize>,
    /// Connections one router process keeps for one tenant.
    pub pool_size: u32,
    /// Database size (`"1 GiB"`) past which the tenant becomes read-only; unset is no quota.
    #[serde(default)]
    pub storage_quota: Option<bytesize::ByteSize>,
    /// Days of data the product keeps for the tenant (the product applies it); unset is
    /// forever.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Product quotas (`[tiers.<name>.quotas] users = { limit = 5, period = "none" }`).
    #[serde(default)]
    pub quotas: BTreeMap<QuotaName, QuotaLimit>,
    /// For an agency of this tier: caps on the sum over all its clients
    /// (`[tiers.<name>.client_quotas] devices = { limit = 10000, period = "none" }`). Each
    /// client increment must fit both the client's own quota and its agency's cap.
    #[serde(default)]
    pub client_quotas: BTreeMap<QuotaName, QuotaLimit>,
    /// Features on for the tier's tenants unless a tenant's `features.<name>` setting says
    /// otherwise.
    #[serde(default)]
    pub features: BTreeSet<FeatureName>,
}

impl TierLimits {
    /// The figures a `retier` applies to the tenant's role, as text: when they change between
    /// configurations, every tenant of the tier is re-tiered.
    pub fn role_figures(&self) -> String {
        let or_none = |value: Option<String>| value.unwrap_or_else(|| "none".into());
        format!(
            "connections {}, statements {}, idle in transaction {}, temp files {}",
            self.connection_limit,
            humantime::format_duration(self.statement_timeout),
            or_none(
                self.idle_in_transaction_timeout
                    .map(|d| humantime::format_duration(d).to_string())
            ),
            or_none(self.temp_file_limit.map(|s| s.to_string())),
        )
    }
}

/// A product quota of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimit {
    /// Most usage a period may count.
    pub limit: i64,
    /// `none` (a count that never resets, like users) or `month` (calendar months in UTC).
    pub period: QuotaPeriod,
}

/// The tiers of a configuration that names none: the five of `deploy/local/tenancy.toml`.
fn default_tiers() -> BTreeMap<Tier, TierLimits> {
    // connection limit, statement timeout (s), idle in transaction (s), temp files (GiB), pool,
    // storage (GiB), users, devices, API calls a month, alerts a month, retention (days),
    // features.
    type Figures = (
        i32,
        u64,
        u64,
        u64,
        u32,
        u64,
        i64,
        i64,
        i64,
        i64,
        u32,
        &'static [&'static str],
    );
    let tier_of = |(
        connections,
        secs,
        idle,
        temp,
        pool,
        storage,
        users,
        devices,
        calls,
        alerts,
        retention,
        features,
    ): Figures| {
        let quota = |limit, period| QuotaLimit { limit, period };
        TierLimits {
            connection_limit: connections,
            statement_timeout: Duration::from_secs(secs),
            idle_in_transaction_timeout: Some(Duration::from_secs(idle)),
            temp_file_limit: Some(bytesize::ByteSize::gib(temp)),
            pool_size: pool,
            storage_quota: Some(bytesize::ByteSize::gib(storage)),
            retention_days: Some(retention),
            quotas: BTreeMap::from([
                (name("users"), quota(users, QuotaPeriod::None)),
                (name("devices"), quota(devices, QuotaPeriod::None)),
                (name("api_calls"), quota(calls, QuotaPeriod::Month)),
                (name("alerts"), quota(alerts, QuotaPeriod::Month)),
            ]),
            client_quotas: BTreeMap::new(),
            features: features.iter().map(|f| name(f)).collect(),
        }
    };
    const BUSINESS: &[&str] = &["api_access", "audit_export", "sso"];
    const ENTERPRISE: &[&str] = &["api_access", "audit_export", "custom_domains", "sso"];
    const MSP: &[&str] = &[
        "api_access",
        "audit_export",
        "client_management",
        "custom_domains",
        "sso",
    ];
    BTreeMap::from([
        (
            name("free"),
            tier_of((5, 15, 60, 1, 2, 1, 5, 10, 1_000, 100, 30, &[])),
        ),
        (
            name("professional"),
            tier_of((
                20,
                30,
                120,
                5,
                5,
                10,
                50,
                100,
                10_000,
                1_000,
                90,
                &["api_access"],
            )),
        ),
        (
            name("business"),
            tier_of((
                60, 60, 300, 20, 10, 100, 500, 1_000, 100_000, 10_000, 365, BUSINESS,
            )),
        ),
        (
            name("enterprise"),
            tier_of((
                150, 120, 600, 50, 20, 500, 1_000, 5_000, 500_000, 50_000, 730, ENTERPRISE,
            )),
        ),
        (name("msp"), {
            let mut msp = tier_of((
                150, 120, 600, 50, 20, 1_000, 1_000, 10_000, 1_000_000, 100_000, 730, MSP,
            ));
            // The MSP bundle's devices: all of an agency's clients together.
            msp.client_quotas = BTreeMap::from([(
                name("devices"),
                QuotaLimit {
                    limit: 10_000,
                    period: QuotaPeriod::None,
                },
            )]);
            msp
        }),
    ])
}

fn default_tier() -> Tier {
    name("free")
}

/// A built-in name (tier, quota, feature).
fn name<T: std::str::FromStr<Err: std::fmt::Debug>>(text: &str) -> T {
    text.parse().expect("a valid built-in name")
}

fn default_registry_pool() -> u32 {
    10
}

/// A database server that holds tenant databases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub id: ServerId,
    pub region: Region,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// A superuser (or a role with CREATEDB, CREATEROLE and membership in every tenant role).
    pub admin_user: String,
    /// The environment variable holding `admin_user`'s password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Set from `password_env` when the configuration is loaded, or directly by embedders.
    #[serde(skip)]
    pub password: Option<SecretString>,
    /// The maintenance database the engine connects to for DDL.
    #[serde(default = "default_admin_database")]
    pub admin_database: String,
    /// Most tenant databases this server may hold.
    pub capacity: u32,
    /// State given to a server the registry has not seen before; afterwards the registry's
    /// state (changed by `drain`) wins.
    #[serde(default = "default_state")]
    pub state: ServerState,
    /// How connections to the server are encrypted: `disable`, `require`, `verify-ca` or
    /// `verify-full`. Default: `verify-full`, or plain text on a loopback host.
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// A file with the CA that signs the server's certificate (PEM); the public web roots when
    /// unset. Read when the configuration is loaded.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The CA itself (from `ca_file`, or set by embedders and the API).
    #[serde(skip)]
    pub ca_pem: Option<String>,
    /// Spare databases kept on this server, overriding `[warm_pool] size`.
    #[serde(default)]
    pub warm_pool: Option<u32>,
}

impl ServerConfig {
    /// An active server with a password in hand (embedders and tests), capacity 1000, maintenance
    /// database `postgres`.
    pub fn new(
        id: ServerId,
        region: Region,
        host: impl Into<String>,
        port: u16,
        admin_user: impl Into<String>,
        password: SecretString,
    ) -> Self {
        Self {
            id,
            region,
            host: host.into(),
            port,
            admin_user: admin_user.into(),
            password_env: None,
            password: Some(password),
            admin_database: default_admin_database(),
            capacity: 1000,
            state: ServerState::Active,
            sslmode: None,
            ca_file: None,
            ca_pem: None,
            warm_pool: None,
        }
    }

    /// How connections to the server are encrypted.
    pub fn sslmode(&self) -> SslMode {
        self.sslmode
            .unwrap_or_else(|| SslMode::default_for(&self.host))
    }
}

fn default_port() -> u16 {
    5432
}

fn default_admin_database() -> String {
    "postgres".into()
}

fn default_state() -> ServerState {
    ServerState::Active
}

impl Config {
    /// Reads the file (when given) and `TENANCY_*` overrides, then the secrets the file names
    /// from the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ControlError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ControlError::Config(format!(
                    "configuration file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(Env::prefixed("TENANCY_").split("__"))
            .extract()
            .map_err(|e| ControlError::Config(e.to_string()))?;
        config.with_secrets(|var| std::env::var(var).ok())
    }

    /// Parses a configuration from TOML text, reading the secrets it names through `secret`
    /// instead of the environment (embedders and tests).
    pub fn from_toml(
        toml: &str,
        secret: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ControlError> {
        let config: Config = Figment::new()
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| ControlError::Config(e.to_string()))?;
        config.with_secrets(secret)
    }

    /// Fills the master key and server passwords from the variables the configuration names,
    /// then validates.
    fn with_secrets(
        mut self,
        secret: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ControlError> {
        let read = |var: &str| -> Result<SecretString, ControlError> {
            secret(var).map(SecretString::from).ok_or_else(|| {
                ControlError::Config(format!("environment variable {var} is not set"))
            })
        };
        if self.engine.master_key.is_none() {
            self.engine.master_key = Some(read(&self.engine.master_key_env)?);
        }
        if let (None, Some(var)) = (
            &self.engine.previous_master_key,
            &self.engine.previous_master_key_env,
        ) {
            self.engine.previous_master_key = Some(read(var)?);
        }
        if let (None, Some(var)) = (
            &self.usage.warning_webhook_secret,
            &self.usage.warning_webhook_secret_env,
        ) {
            self.usage.warning_webhook_secret = Some(read(var)?);
        }
        for server in &mut self.servers {
            if let (None, Some(var)) = (&server.password, &server.password_env) {
                server.password = Some(read(var)?);
            }
            if let (None, Some(path)) = (&server.ca_pem, &server.ca_file) {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    ControlError::Config(format!(
                        "server {}: ca_file {}: {e}",
                        server.id,
                        path.display()
                    ))
                })?;
                tenancy_pgtls::parse_ca(&pem)
                    .map_err(|e| ControlError::Config(format!("server {}: {e}", server.id)))?;
                server.ca_pem = Some(pem);
            }
        }
        self.keyring()?;
        self.validate()?;
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), ControlError> {
        let mut seen = std::collections::HashSet::new();
        for server in &self.servers {
            if !seen.insert(&server.id) {
                return Err(ControlError::Config(format!(
                    "server {} is listed twice",
                    server.id
                )));
            }
        }
        if let Some(url) = &self.usage.warning_webhook_url {
            check_webhook_url(url)?;
            if self.usage.warning_webhook_secret.is_none() {
                return Err(ControlError::Config(
                    "usage.warning_webhook_url needs usage.warning_webhook_secret_env".into(),
                ));
            }
        }
        if self.usage.sample_interval < Duration::from_secs(1) {
            return Err(ControlError::Config(
                "usage.sample_interval must be at least 1s".into(),
            ));
        }
        if self.engine.workers == 0 {
            return Err(ControlError::Config(
                "engine.workers must be at least 1".into(),
            ));
        }
        if self.warm_pool.clones_at_once == 0 {
            return Err(ControlError::Config(
                "warm_pool.clones_at_once must be at least 1".into(),
            ));
        }
        if self.engine.max_attempts < 1 {
            return Err(ControlError::Config(
                "engine.max_attempts must be at least 1".into(),
            ));
        }
        if !self.tiers.contains_key(&self.default_tier) {
            return Err(ControlError::Config(format!(
                "default_tier {} is not one of the configured tiers ({})",
                self.default_tier,
                self.tier_names()
            )));
        }
        for (name, limits) in &self.tiers {
            if limits.connection_limit < 1 || limits.pool_size < 1 {
                return Err(ControlError::Config(format!(
                    "tiers.{name}: connection_limit and pool_size must be at least 1"
                )));
            }
            for (table, quotas) in [
                ("quotas", &limits.quotas),
                ("client_quotas", &limits.client_quotas),
            ] {
                if let Some((quota, _)) = quotas.iter().find(|(_, q)| q.limit < 0) {
                    return Err(ControlError::Config(format!(
                        "tiers.{name}.{table}.{quota}: limit must be 0 or more"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The configured tiers' names, comma separated (for messages).
    pub fn tier_names(&self) -> String {
        self.tiers
            .keys()
            .map(Tier::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A tier's limits; an error for a tier this configuration does not define (a tenant
    /// re-tiered by a replica with a newer configuration, say).
    pub fn tier_limits(&self, tier: &Tier) -> Result<&TierLimits, ControlError> {
        self.tiers.get(tier).ok_or_else(|| {
            ControlError::Config(format!(
                "tier {tier} is not configured (configured: {})",
                self.tier_names()
            ))
        })
    }

    /// The master keys tenant passwords derive from; refuses keys shorter than 32 bytes.
    pub fn keyring(&self) -> Result<Keyring, ControlError> {
        let current = self
            .engine
            .master_key
            .clone()
            .ok_or_else(|| ControlError::Config("no master key configured".into()))?;
        let previous = self
            .engine
            .previous_master_key
            .clone()
            .map(MasterKey::new)
            .transpose()?;
        Ok(Keyring::new(MasterKey::new(current)?, previous))
    }

    pub fn default_region(&self) -> Option<Region> {
        self.default_region
            .clone()
            .or_else(|| self.servers.first().map(|s| s.region.clone()))
    }

    pub fn server(&self, id: &ServerId) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| &s.id == id)
    }
}

impl Config {
    /// One server, whose cluster may also hold the registry database (as `make run` does).
    pub fn single_server(
        registry_url: impl Into<String>,
        server: ServerConfig,
        master_key: SecretString,
    ) -> Self {
        let mut config = Self::new(registry_url);
        config.engine.master_key = Some(master_key);
        config.servers = vec![server];
        config
    }

    /// A configuration with defaults for everything but the registry URL; embedders and tests
    /// add servers and set secrets directly.
    pub fn new(registry_url: impl Into<String>) -> Self {
        Self {
            registry: RegistryConfig {
                url: SecretString::from(registry_url.into()),
                max_connections: default_registry_pool(),
            },
            engine: EngineConfig::default(),
            default_region: None,
            tiers: default_tiers(),
            default_tier: default_tier(),
            servers: Vec::new(),
            usage: UsageConfig::default(),
            warm_pool: WarmPoolConfig::default(),
            moves: MovesConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(text: &str) -> Tier {
        name(text)
    }

    #[test]
    fn parses_the_documented_file() {
        let toml = r#"
            default_region = "local"
            [registry]
            url = "postgres://u:p@127.0.0.1:5432/tenancy_registry"
            [engine]
            workers = 2
            lease = "10s"
            poll_interval = "500ms"
            max_attempts = 3
            backoff_base = "1s"
            backoff_max = "1m"
            retention = "7days"
            reconcile_interval = "5m"
            master_key_env = "TEST_MASTER_KEY_UNSET"
            [[servers]]
            id = "local-1"
            region = "local"
            host = "127.0.0.1"
            admin_user = "postgres"
            capacity = 100
        "#;
        let config: Config = Figment::new().merge(Toml::string(toml)).extract().unwrap();
        assert_eq!(config.engine.workers, 2);
        assert_eq!(config.engine.retention, Duration::from_secs(7 * 86400));
        assert_eq!(config.servers[0].port, 5432);
        assert_eq!(config.tier_limits(&tier("free")).unwrap().pool_size, 2);
        assert_eq!(config.default_tier, tier("free"));
        config.validate().unwrap();
    }

    #[test]
    fn refuses_bad_values() {
        let toml = r#"
            [registry]
            url = "x"
            [[servers]]
            id = "Bad Id"
            region = "local"
            host = "h"
            admin_user = "a"
            capacity = 1
        "#;
        let err = Figment::new()
            .merge(Toml::string(toml))
            .extract::<Config>()
            .unwrap_err();
        assert!(err.to_string().contains("server_id"), "{err}");
    }

    const MINIMAL: &str = r#"
        [registry]
        url = "postgres://u:p@127.0.0.1:5432/tenancy_registry"
        [engine]
        master_key_env = "KEY"
    "#;

    fn parse(extra: &str) -> Result<Config, ControlError> {
        // Top-level keys go before the tables.
        let toml = format!("{extra}\n{MINIMAL}");
        Config::from_toml(&toml, |_| Some("k".repeat(32)))
    }

    #[test]
    fn the_shipped_tiers_are_the_built_in_ones() {
        let shipped = include_str!("../../../deploy/local/tenancy.toml");
        let config = Config::from_toml(shipped, |_| Some("k".repeat(32))).unwrap();
        assert_eq!(config.tiers, default_tiers());
        assert_eq!(
            config.tier_names(),
            "business, enterprise, free, msp, professional"
        );
        let free = config.tier_limits(&tier("free")).unwrap();
        assert_eq!(free.temp_file_limit, Some(bytesize::ByteSize::gib(1)));
        assert_eq!(
            free.idle_in_transaction_timeout,
            Some(Duration::from_secs(60))
        );
        assert!(config.tier_limits(&tier("standard")).is_err());
        let msp = config.tier_limits(&tier("msp")).unwrap();
        assert_eq!(msp.storage_quota, Some(bytesize::ByteSize::gib(1000)));
        assert_eq!(msp.retention_days, Some(730));
        let calls = msp.quotas[&name::<QuotaName>("api_calls")];
        assert_eq!((calls.limit, calls.period), (1_000_000, QuotaPeriod::Month));
        assert!(
            msp.features
                .contains(&name::<FeatureName>("client_management"))
        );
    }

    #[test]
    fn the_warm_pool_clones_one_spare_at_a_time_unless_told() {
        assert_eq!(parse("").unwrap().warm_pool.clones_at_once, 1);
        let three = parse("[warm_pool]\nclones_at_once = 3").unwrap();
        assert_eq!(three.warm_pool.clones_at_once, 3);
        let err = parse("[warm_pool]\nclones_at_once = 0").unwrap_err();
        assert!(err.to_string().contains("clones_at_once"), "{err}");
    }

    #[test]
    fn the_warning_webhook_is_https_or_loopback_and_signed() {
        let with = |url: &str, secret_env: &str| {
            let toml = format!(
                "[usage]\nwarning_webhook_url = \"{url}\"\nwarning_webhook_secret_env = \"{secret_env}\"\n"
            );
            parse(&toml)
        };
        assert!(with("https://hooks.example.com/tenancy", "HOOK").is_ok());
        assert!(with("http://127.0.0.1:9000/hook", "HOOK").is_ok());
        assert!(with("http://[::1]:9000/hook", "HOOK").is_ok());
        for refused in [
            "http://hooks.example.com/x",
            "ftp://127.0.0.1/x",
            "not a url",
        ] {
            assert!(with(refused, "HOOK").is_err(), "{refused}");
        }
        let unsigned = parse("[usage]\nwarning_webhook_url = \"https://hooks.example.com\"\n");
        assert!(
            unsigned
                .unwrap_err()
                .to_string()
                .contains("warning_webhook_secret_env")
        );
    }

    #[test]
    fn quotas_and_features_come_from_the_file() {
        let custom = parse(
            r#"default_tier = "hobby"
               [tiers.hobby]
               connection_limit = 3
               statement_timeout = "5s"
               pool_size = 1
               storage_quota = "64 MiB"
               features = ["sso"]
               [tiers.hobby.quotas]
               seats = { limit = 3, period = "none" }
               exports = { limit = 10, period = "month" }"#,
        )
        .unwrap();
        let hobby = custom.tier_limits(&tier("hobby")).unwrap();
        assert_eq!(hobby.storage_quota, Some(bytesize::ByteSize::mib(64)));
        assert_eq!(hobby.quotas.len(), 2);
        assert_eq!(
            hobby.quotas[&name::<QuotaName>("seats")].period,
            QuotaPeriod::None
        );
        for bad in [
            "seats = { limit = -1, period = \"none\" }",
            "seats = { limit = 3, period = \"week\" }",
            "seats = { limit = 3 }",
            "Seats = { limit = 3, period = \"none\" }",
        ] {
            let toml = format!(
                "default_tier = \"x\"\n[tiers.x]\nconnection_limit = 3\nstatement_timeout = \"5s\"\npool_size = 1\n[tiers.x.quotas]\n{bad}"
            );
            assert!(parse(&toml).is_err(), "{bad}");
        }
    }

    #[test]
    fn tiers_are_any_valid_names_and_the_default_must_be_one() {
        let custom = parse(
            r#"default_tier = "hobby"
               [tiers.hobby]
               connection_limit = 3
               statement_timeout = "5s"
               pool_size = 1"#,
        )
        .unwrap();
        assert_eq!(custom.tier_names(), "hobby");
        let hobby = custom.tier_limits(&tier("hobby")).unwrap();
        assert_eq!(
            (hobby.temp_file_limit, hobby.idle_in_transaction_timeout),
            (None, None)
        );

        let missing_default = parse(
            r#"[tiers.hobby]
               connection_limit = 3
               statement_timeout = "5s"
               pool_size = 1"#,
        )
        .unwrap_err();
        assert!(
            missing_default.to_string().contains("default_tier free"),
            "{missing_default}"
        );
        for bad in [
            "[tiers.Gold]\nconnection_limit = 3\nstatement_timeout = \"5s\"\npool_size = 1",
            "default_tier = \"x\"\n[tiers.x]\nconnection_limit = 0\nstatement_timeout = \"5s\"\npool_size = 1",
            "default_tier = \"x\"\n[tiers.x]\nconnection_limit = 3\nstatement_timeout = \"5s\"\npool_size = 1\ntemp_file_limit = \"lots\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
