//! One TOML file for the registry service and `tenantctl`, with environment overrides
//! (`TENANCY_ENGINE__WORKERS=8` sets `engine.workers`). Secrets never live in the file: the
//! registry URL may come from `TENANCY_REGISTRY__URL`, server passwords and the master key from the
//! environment variables the file names.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;
use tenancy_core::{Region, ServerId, ServerState, SslMode, Tier};

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
    #[serde(default = "default_tiers")]
    pub tiers: BTreeMap<Tier, TierLimits>,
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
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

/// Limits applied per tier: on the tenant role at provisioning, and to router pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// `CONNECTION LIMIT` of the tenant role, over all services.
    pub connection_limit: i32,
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Connections one router process keeps for one tenant.
    pub pool_size: u32,
}

fn default_tiers() -> BTreeMap<Tier, TierLimits> {
    let limits = |connection_limit, secs, pool_size| TierLimits {
        connection_limit,
        statement_timeout: Duration::from_secs(secs),
        pool_size,
    };
    BTreeMap::from([
        (Tier::Free, limits(5, 15, 2)),
        (Tier::Standard, limits(20, 30, 5)),
        (Tier::Premium, limits(60, 60, 10)),
    ])
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
        if self.engine.workers == 0 {
            return Err(ControlError::Config(
                "engine.workers must be at least 1".into(),
            ));
        }
        if self.engine.max_attempts < 1 {
            return Err(ControlError::Config(
                "engine.max_attempts must be at least 1".into(),
            ));
        }
        for tier in Tier::ALL {
            if !self.tiers.contains_key(tier) {
                return Err(ControlError::Config(format!("tiers.{tier} is missing")));
            }
        }
        Ok(())
    }

    pub fn tier_limits(&self, tier: Tier) -> TierLimits {
        self.tiers[&tier]
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
            servers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(config.tier_limits(Tier::Free).pool_size, 2);
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
}
