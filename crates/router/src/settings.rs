//! A tenant's settings and features for product services: fetched from the registry once,
//! cached, and dropped when the change feed reports the tenant (every settings change bumps its
//! change sequence), so a change is seen within the feed's delay (a second or two).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::Value;
use std::sync::Arc;
use tenancy_core::{EffectiveFeatures, OrgId, Setting, SettingKey};

/// A tenant's settings, secrets in plain text, and its effective features.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub settings: BTreeMap<SettingKey, Setting>,
    pub features: EffectiveFeatures,
}

impl TenantSettings {
    pub(crate) fn new(settings: Vec<Setting>, features: EffectiveFeatures) -> Self {
        Self {
            settings: settings.into_iter().map(|s| (s.key.clone(), s)).collect(),
            features,
        }
    }

    /// A setting's value (a secret's plain text), if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.settings
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .and_then(|(_, s)| s.value.as_ref())
    }

    /// Whether a feature is on for the tenant.
    pub fn is_enabled(&self, feature: &str) -> bool {
        self.features.is_enabled(feature)
    }
}

/// Fetched settings by tenant. A fetch that raced an invalidation is not kept (the epoch moved).
#[derive(Default)]
pub(crate) struct SettingsCache {
    entries: Mutex<HashMap<OrgId, (Instant, Arc<TenantSettings>)>>,
    epoch: AtomicU64,
}

impl SettingsCache {
    pub(crate) fn get(
        &self,
        org_id: &OrgId,
        ttl: std::time::Duration,
    ) -> Option<Arc<TenantSettings>> {
        let entries = self.entries.lock().expect("settings lock");
        entries
            .get(org_id)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, settings)| settings.clone())
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub(crate) fn insert(&self, org_id: &OrgId, epoch: u64, settings: Arc<TenantSettings>) {
        let mut entries = self.entries.lock().expect("settings lock");
        if self.epoch() == epoch {
            entries.insert(org_id.clone(), (Instant::now(), settings));
        }
    }

    pub(crate) fn invalidate(&self, org_id: &OrgId) {
        let mut entries = self.entries.lock().expect("settings lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        entries.remove(org_id);
    }

    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock().expect("settings lock");
        self.epoch.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}
