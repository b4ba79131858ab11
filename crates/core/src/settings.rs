//! Per-tenant settings and features: the API's bodies and the rules a value must keep.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{FeatureName, SettingKey};

/// Largest setting value: characters of a string (or secret), bytes of other JSON (compact).
pub const MAX_SETTING_BYTES: usize = 16 * 1024;

/// Settings under this prefix turn a feature on or off for the tenant (`features.sso`), over
/// its tier's defaults.
pub const FEATURE_PREFIX: &str = "features.";

/// What a setting's value is. A `secret` is a string stored encrypted, shown in plain text only
/// to platform admins and router services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SettingType {
    String,
    Number,
    Bool,
    Json,
    Secret,
}

impl SettingType {
    pub fn as_str(self) -> &'static str {
        match self {
            SettingType::String => "string",
            SettingType::Number => "number",
            SettingType::Bool => "bool",
            SettingType::Json => "json",
            SettingType::Secret => "secret",
        }
    }
}

impl TryFrom<String> for SettingType {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        serde_json::from_value(Value::String(value)).map_err(|e| e.to_string())
    }
}

/// `PUT /v1/tenants/{org_id}/settings/{key}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PutSetting {
    #[serde(rename = "type")]
    pub kind: SettingType,
    /// A string for `string` and `secret`, a number for `number`, a boolean for `bool`, any
    /// JSON but null for `json`; at most 16,384 characters (a string) or bytes (compact JSON).
    pub value: Value,
}

impl PutSetting {
    /// Refuses a value that is not of its type, is too large, or a `features.*` key that is
    /// not a boolean for one feature.
    pub fn check(&self, key: &SettingKey) -> Result<(), String> {
        let fits = match self.kind {
            SettingType::String | SettingType::Secret => self.value.is_string(),
            SettingType::Number => self.value.is_number(),
            SettingType::Bool => self.value.is_boolean(),
            SettingType::Json => !self.value.is_null(),
        };
        if !fits {
            return Err(format!("value: not a valid {} value", self.kind.as_str()));
        }
        let size = match &self.value {
            Value::String(text) => text.chars().count(),
            other => other.to_string().len(),
        };
        if size > MAX_SETTING_BYTES {
            return Err(format!(
                "value: {size} characters, more than the {MAX_SETTING_BYTES} allowed"
            ));
        }
        if let Some(feature) = key.as_str().strip_prefix(FEATURE_PREFIX) {
            feature
                .parse::<FeatureName>()
                .map_err(|e| format!("key: {e}"))?;
            if self.kind != SettingType::Bool {
                return Err("a features.<name> setting is a bool".into());
            }
        }
        Ok(())
    }
}

/// A setting as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Setting {
    pub key: SettingKey,
    #[serde(rename = "type")]
    pub kind: SettingType,
    /// Absent for a secret the caller may not read (tenant admins see only that it is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /v1/tenants/{org_id}/features`: the tier's defaults with the tenant's overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectiveFeatures {
    /// Every feature on for the tenant.
    pub enabled: BTreeSet<FeatureName>,
    /// The tier's defaults.
    pub tier_defaults: BTreeSet<FeatureName>,
    /// The tenant's `features.<name>` settings.
    pub overrides: BTreeMap<FeatureName, bool>,
}

impl EffectiveFeatures {
    pub fn resolve(
        tier_defaults: BTreeSet<FeatureName>,
        overrides: BTreeMap<FeatureName, bool>,
    ) -> Self {
        let mut enabled = tier_defaults.clone();
        for (feature, on) in &overrides {
            if *on {
                enabled.insert(feature.clone());
            } else {
                enabled.remove(feature);
            }
        }
        Self {
            enabled,
            tier_defaults,
            overrides,
        }
    }

    pub fn is_enabled(&self, feature: &str) -> bool {
        self.enabled.iter().any(|f| f.as_str() == feature)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn put(kind: SettingType, value: Value) -> PutSetting {
        PutSetting { kind, value }
    }

    #[test]
    fn values_must_be_of_their_type_and_bounded() {
        let key: SettingKey = "smtp.host".parse().unwrap();
        assert!(put(SettingType::String, json!("mail")).check(&key).is_ok());
        assert!(
            put(SettingType::Json, json!({"a": [1]}))
                .check(&key)
                .is_ok()
        );
        for (kind, value) in [
            (SettingType::String, json!(1)),
            (SettingType::Secret, json!({"p": 1})),
            (SettingType::Number, json!("1")),
            (SettingType::Bool, json!(0)),
            (SettingType::Json, Value::Null),
            (
                SettingType::String,
                json!("x".repeat(MAX_SETTING_BYTES + 1)),
            ),
        ] {
            assert!(
                put(kind, value.clone()).check(&key).is_err(),
                "{kind:?} {value}"
            );
        }
        let feature: SettingKey = "features.sso".parse().unwrap();
        assert!(put(SettingType::Bool, json!(true)).check(&feature).is_ok());
        assert!(
            put(SettingType::String, json!("on"))
                .check(&feature)
                .is_err()
        );
        let nested: SettingKey = "features.sso.extra".parse().unwrap();
        assert!(put(SettingType::Bool, json!(true)).check(&nested).is_err());
        for hostile in [
            "Smtp",
            "smtp..host",
            ".smtp",
            "smtp.",
            "smtp host",
            "1smtp",
            "",
        ] {
            assert!(hostile.parse::<SettingKey>().is_err(), "{hostile}");
        }
    }

    #[test]
    fn overrides_turn_tier_features_on_and_off() {
        let name = |n: &str| n.parse::<FeatureName>().unwrap();
        let features = EffectiveFeatures::resolve(
            BTreeSet::from([name("sso"), name("api_access")]),
            BTreeMap::from([(name("sso"), false), (name("beta"), true)]),
        );
        assert_eq!(
            features.enabled,
            BTreeSet::from([name("api_access"), name("beta")])
        );
        assert!(!features.is_enabled("sso"));
    }
}
