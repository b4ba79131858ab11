//! Per-tenant settings (secrets sealed with AES-256-GCM) and the features they resolve to.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;
use serde_json::Value;
use tenancy_core::{
    EffectiveFeatures, ErrorCode, FEATURE_PREFIX, FeatureName, OrgId, PutSetting, Setting,
    SettingKey, SettingType,
};
use tracing::instrument;

use super::Engine;
use crate::error::ControlError;
use crate::secrets::{open_setting, seal_setting};
use crate::store::{Actor, SettingWrite, StoredSetting, StoredValue};

/// Whether secret values are shown in plain text (platform admins and router services) or only
/// as set (everyone else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Reveal,
    Redact,
}

/// Who changes a setting, which decides what they may change of a tenant's features: a platform
/// admin anything; a tenant admin only to turn off a feature the tier grants, and never a
/// feature override a platform admin made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    Platform,
    Tenant,
}

impl Engine {
    /// Every setting of the tenant, by key.
    pub async fn settings(
        &self,
        org_id: &OrgId,
        secrets: Secrets,
    ) -> Result<Vec<Setting>, ControlError> {
        self.tenant(org_id).await?;
        self.store()
            .settings(org_id)
            .await?
            .into_iter()
            .map(|stored| self.shown(org_id, stored, secrets))
            .collect()
    }

    /// One setting of the tenant.
    pub async fn setting(
        &self,
        org_id: &OrgId,
        key: &SettingKey,
        secrets: Secrets,
    ) -> Result<Setting, ControlError> {
        self.settings(org_id, secrets)
            .await?
            .into_iter()
            .find(|s| &s.key == key)
            .ok_or_else(|| ControlError::NotFound {
                what: format!("setting {key}"),
            })
    }

    /// Sets a setting; a secret is sealed before it leaves this process. Answers the setting
    /// with a secret redacted.
    #[instrument(skip_all, fields(%org_id, %key))]
    pub async fn put_setting(
        &self,
        org_id: &OrgId,
        key: &SettingKey,
        put: PutSetting,
        authority: Authority,
        actor: &Actor,
    ) -> Result<Setting, ControlError> {
        put.check(key).map_err(ControlError::Validation)?;
        let tenant = self.live_tenant(org_id).await?;
        if authority == Authority::Tenant
            && let Some(feature) = key.as_str().strip_prefix(FEATURE_PREFIX)
        {
            // A tenant admin may only turn off what its tier grants.
            let granted = self
                .config()
                .tier_limits(&tenant.tier)?
                .features
                .iter()
                .any(|f| f.as_str() == feature);
            if put.value != Value::Bool(false) || !granted {
                return Err(ControlError::conflict(
                    ErrorCode::Forbidden,
                    format!(
                        "a tenant admin may only turn off a feature its tier ({}) grants; \
                         {feature} is for a platform admin to change",
                        tenant.tier
                    ),
                ));
            }
        }
        let value = match (put.kind, put.value) {
            (SettingType::Secret, Value::String(secret)) => {
                StoredValue::Sealed(seal_setting(self.keyring(), org_id, key.as_str(), &secret))
            }
            (_, value) => StoredValue::Plain(value),
        };
        self.check_write_rate(org_id, authority)?;
        let caps = &self.config().settings;
        let write = SettingWrite {
            by_platform: authority == Authority::Platform,
            max_count: caps.per_tenant,
            max_bytes: caps.bytes_per_tenant.as_u64(),
        };
        let stored = self
            .store()
            .put_setting(org_id, key, put.kind, value, write, actor)
            .await?;
        self.shown(org_id, stored, Secrets::Redact)
    }

    /// Removes a setting.
    pub async fn delete_setting(
        &self,
        org_id: &OrgId,
        key: &SettingKey,
        authority: Authority,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        self.live_tenant(org_id).await?;
        self.check_write_rate(org_id, authority)?;
        let by_platform = authority == Authority::Platform;
        if self
            .store()
            .delete_setting(org_id, key, by_platform, actor)
            .await?
        {
            Ok(())
        } else {
            Err(ControlError::NotFound {
                what: format!("setting {key}"),
            })
        }
    }

    /// Refuses a tenant admin's write past `settings.tenant_writes_per_minute` (`rate_limited`).
    fn check_write_rate(&self, org_id: &OrgId, authority: Authority) -> Result<(), ControlError> {
        if authority == Authority::Platform {
            return Ok(());
        }
        let limiter = &self.inner.tenant_setting_writes;
        if limiter.len() > 10_000 {
            limiter.retain_recent();
        }
        limiter.check_key(org_id).map_err(|_| {
            metrics::counter!("tenancy_setting_writes_limited_total").increment(1);
            ControlError::conflict(
                ErrorCode::RateLimited,
                format!(
                    "tenant {org_id}'s admins may change {} settings a minute; try again shortly",
                    self.config().settings.tenant_writes_per_minute
                ),
            )
        })
    }

    /// The tenant's features: its tier's defaults with its `features.<name>` settings over them.
    pub async fn features(&self, org_id: &OrgId) -> Result<EffectiveFeatures, ControlError> {
        let tenant = self.tenant(org_id).await?;
        let defaults = self.config().tier_limits(&tenant.tier)?.features.clone();
        let mut overrides = BTreeMap::new();
        for stored in self.store().settings(org_id).await? {
            let Some(feature) = stored.key.as_str().strip_prefix(FEATURE_PREFIX) else {
                continue;
            };
            if let (Ok(feature), StoredValue::Plain(Value::Bool(on))) =
                (feature.parse::<FeatureName>(), &stored.value)
            {
                overrides.insert(feature, *on);
            }
        }
        Ok(EffectiveFeatures::resolve(defaults, overrides))
    }

    /// Re-seals every secret setting sealed under another master key than the current one (the
    /// settings half of `tenantctl rekey`); returns how many were re-sealed.
    pub async fn reseal_settings(&self) -> Result<usize, ControlError> {
        let current = self.keyring().current().id().to_owned();
        let mut resealed = 0;
        for (org_id, stored) in self.store().settings_to_reseal(&current).await? {
            let StoredValue::Sealed(sealed) = &stored.value else {
                continue;
            };
            let secret = open_setting(self.keyring(), &org_id, stored.key.as_str(), sealed)?;
            let again = seal_setting(
                self.keyring(),
                &org_id,
                stored.key.as_str(),
                secret.expose_secret(),
            );
            if self
                .store()
                .reseal_setting(&org_id, &stored.key, &sealed.key_id, &again)
                .await?
            {
                resealed += 1;
            }
        }
        Ok(resealed)
    }

    fn shown(
        &self,
        org_id: &OrgId,
        stored: StoredSetting,
        secrets: Secrets,
    ) -> Result<Setting, ControlError> {
        let value = match (&stored.value, secrets) {
            (StoredValue::Plain(value), _) => Some(value.clone()),
            (StoredValue::Sealed(sealed), Secrets::Reveal) => Some(Value::String(
                open_setting(self.keyring(), org_id, stored.key.as_str(), sealed)?
                    .expose_secret()
                    .to_owned(),
            )),
            (StoredValue::Sealed(_), Secrets::Redact) => None,
        };
        Ok(Setting {
            key: stored.key,
            kind: stored.kind,
            value,
            updated_at: stored.updated_at,
        })
    }
}
