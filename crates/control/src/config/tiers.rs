//! `[tiers.<name>]`: what a tier gives its tenants. A configuration that names no tiers gets the
//! five of `default-tiers.toml` (the same as `deploy/local/tenancy.toml`'s).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use tenancy_core::{FeatureName, QuotaName, QuotaPeriod, Tier};

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
    /// Whether the tenant role may create temporary tables (`TEMPORARY` on its database, while
    /// it is writable). Off unless asked for: temporary tables count against neither
    /// `temp_file_limit` nor the storage quota, and fill the server's disk between samples.
    #[serde(default)]
    pub temp_tables: bool,
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
    /// Scheduled backups of the tier's tenants and how long they are kept
    /// (`[tiers.<name>.backups]`); none scheduled when unset.
    #[serde(default)]
    pub backups: Option<TierBackups>,
}

/// `[tiers.<name>.backups]`: how often the tier's tenants are backed up, and which backups are
/// kept. The newest `keep` completed backups of a tenant are kept whatever their age; older
/// ones are deleted once older than `keep_for` (at once when `keep_for` is unset). The newest
/// completed backup is never deleted by retention.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierBackups {
    /// A tenant is backed up once its newest backup (or, before its first, the tenant itself)
    /// is this old.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Completed backups kept per tenant, whatever their age (at least 1).
    #[serde(default = "default_keep")]
    pub keep: u32,
    /// Backups beyond `keep` are deleted once this old.
    #[serde(default, with = "humantime_serde")]
    pub keep_for: Option<Duration>,
}

fn default_keep() -> u32 {
    7
}

impl TierLimits {
    /// Whether a tenant of this tier may hold `TEMPORARY` on its database: the tier allows
    /// temporary tables, and the tenant is active and writable. The operations grant by it and
    /// the reconciler checks by it.
    pub fn temp_tables_for(&self, active: bool, read_only: bool) -> bool {
        self.temp_tables && active && !read_only
    }

    /// The figures a `retier` applies to the tenant's role, as text: when they change between
    /// configurations, every tenant of the tier is re-tiered.
    pub fn role_figures(&self) -> String {
        let or_none = |value: Option<String>| value.unwrap_or_else(|| "none".into());
        format!(
            "connections {}, statements {}, idle in transaction {}, temp files {}, temp tables {}",
            self.connection_limit,
            humantime::format_duration(self.statement_timeout),
            or_none(
                self.idle_in_transaction_timeout
                    .map(|d| humantime::format_duration(d).to_string())
            ),
            or_none(self.temp_file_limit.map(|s| s.to_string())),
            if self.temp_tables { "yes" } else { "no" },
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

/// The tiers of a configuration that names none, written as a configuration would.
const DEFAULT_TIERS: &str = include_str!("default-tiers.toml");

/// The tiers of a configuration that names none: the five of `default-tiers.toml`.
pub(super) fn default_tiers() -> BTreeMap<Tier, TierLimits> {
    #[derive(Deserialize)]
    struct Tiers {
        tiers: BTreeMap<Tier, TierLimits>,
    }
    figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(DEFAULT_TIERS),
    )
    .extract::<Tiers>()
    .expect("the built-in tiers parse")
    .tiers
}
