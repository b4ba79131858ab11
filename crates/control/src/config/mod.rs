//! One TOML file for the registry service and `tenantctl`, with environment overrides
//! (`TENANCY_ENGINE__WORKERS=8` sets `engine.workers`). Secrets never live in the file: the
//! registry URL may come from `TENANCY_REGISTRY__URL`, server passwords and the master key from the
//! environment variables the file names.

mod archive;
mod backups;
mod console;
mod engine;
mod servers;
mod tiers;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;
use tenancy_core::{Region, ServerId, Tier};

use crate::error::ControlError;
use crate::secrets::{Keyring, MasterKey};

pub use archive::{ArchiveConfig, ServerArchive};
pub use backups::BackupsConfig;
pub use console::ConsoleConfig;
pub use engine::{EngineConfig, MovesConfig, SettingsConfig, UsageConfig, WarmPoolConfig};
pub use servers::ServerConfig;
pub use tiers::{QuotaLimit, TierBackups, TierLimits};

use engine::check_webhook_url;
use tiers::default_tiers;

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
    #[serde(default)]
    pub settings: SettingsConfig,
    #[serde(default)]
    pub backups: BackupsConfig,
    #[serde(default)]
    pub wal_archive: ArchiveConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `postgres://user:password@host:port/tenancy_registry`.
    pub url: SecretString,
    #[serde(default = "default_registry_pool")]
    pub max_connections: u32,
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
        self.backups.with_secrets(read)?;
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
        if !(1..=100_000).contains(&self.engine.scram_iterations) {
            return Err(ControlError::Config(format!(
                "engine.scram_iterations is {}: from 1 to 100000 (4096 by default)",
                self.engine.scram_iterations
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for server in &self.servers {
            server.check_tls().map_err(ControlError::Config)?;
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
        if self.settings.per_tenant == 0 || self.settings.tenant_writes_per_minute == 0 {
            return Err(ControlError::Config(
                "settings.per_tenant and settings.tenant_writes_per_minute must be at least 1"
                    .into(),
            ));
        }
        self.backups.validate()?;
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
            if let Some(backups) = &limits.backups
                && (backups.interval < Duration::from_secs(1) || backups.keep == 0)
            {
                return Err(ControlError::Config(format!(
                    "tiers.{name}.backups: interval must be at least 1s and keep at least 1"
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
            settings: SettingsConfig::default(),
            backups: BackupsConfig::default(),
            wal_archive: ArchiveConfig::default(),
            console: ConsoleConfig::default(),
        }
    }

    /// How `server`'s WAL is archived, if it is (configured servers only).
    pub fn server_archive(&self, server: &ServerId) -> Option<&ServerArchive> {
        self.servers
            .iter()
            .find(|s| &s.id == server)
            .and_then(|s| s.wal_archive.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenancy_core::{FeatureName, QuotaName, QuotaPeriod};

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
        let shipped = include_str!("../../../../deploy/local/tenancy.toml");
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
        // `make run` archives its server's WAL.
        let local: ServerId = "local-1".parse().unwrap();
        assert!(config.server_archive(&local).is_some());
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

    /// A remote server is reached over verified TLS unless the file says the network is
    /// trusted; verify-ca needs the server's CA (security review 2, N15).
    #[test]
    fn a_remote_server_takes_verified_tls_unless_allowed() {
        let server = |host: &str, extra: &str| {
            let toml = format!(
                "[registry]\nurl = \"postgres://u:p@127.0.0.1/r\"\n[[servers]]\nid = \"pg-1\"\n\
                 region = \"eu\"\nhost = \"{host}\"\nadmin_user = \"postgres\"\n\
                 capacity = 10\npassword_env = \"TENANCY_SERVER_PASSWORD_PG_1\"\n{extra}"
            );
            Config::from_toml(&toml, |_| Some("k".repeat(32)))
        };
        assert!(
            server("db.example.com", "").is_ok(),
            "verify-full by default"
        );
        assert!(server("127.0.0.1", "sslmode = \"disable\"").is_ok());
        for refused in [
            "sslmode = \"disable\"",
            "sslmode = \"require\"",
            "sslmode = \"verify-ca\"",
        ] {
            let err = server("db.example.com", refused).unwrap_err();
            assert!(err.to_string().contains("sslmode"), "{refused}: {err}");
        }
        assert!(
            server(
                "db.example.com",
                "sslmode = \"require\"\nallow_unverified_tls = true"
            )
            .is_ok()
        );
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
