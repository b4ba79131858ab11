//! The engine's sections: `[engine]` (workers, leases, retries), `[moves]`, `[warm_pool]` and
//! `[usage]`.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::ControlError;

/// What one tenant may keep in settings, and how fast its admins may change them: the registry
/// keeps every value (and an audit event of each change), and every change reaches every
/// router through the change feed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsConfig {
    /// Settings one tenant may have.
    #[serde(default = "default_settings_per_tenant")]
    pub per_tenant: u32,
    /// Bytes of values one tenant may keep in all.
    #[serde(default = "default_settings_bytes")]
    pub bytes_per_tenant: bytesize::ByteSize,
    /// Changes a tenant's own admins may make per minute (platform admins are not limited);
    /// each registry process counts its own.
    #[serde(default = "default_tenant_writes")]
    pub tenant_writes_per_minute: u32,
}

impl Default for SettingsConfig {
    fn default() -> Self {
        Self {
            per_tenant: default_settings_per_tenant(),
            bytes_per_tenant: default_settings_bytes(),
            tenant_writes_per_minute: default_tenant_writes(),
        }
    }
}

fn default_settings_per_tenant() -> u32 {
    200
}

fn default_settings_bytes() -> bytesize::ByteSize {
    bytesize::ByteSize::kib(256)
}

fn default_tenant_writes() -> u32 {
    60
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
pub(super) fn check_webhook_url(url: &str) -> Result<(), ControlError> {
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
    /// PBKDF2 iterations of the SCRAM verifiers of tenant roles: PostgreSQL's default, 4,096,
    /// which RFC 7677 asks clients to require. Fewer make every tenant login cheaper (the
    /// onboarding's verifying login, every connection a router opens) at no cost in safety for
    /// a password of 256 random bits, but clients that follow the RFC (pg8000, through scramp)
    /// then refuse to log in.
    pub scram_iterations: u32,
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
            scram_iterations: crate::secrets::DEFAULT_SCRAM_ITERATIONS,
        }
    }
}
