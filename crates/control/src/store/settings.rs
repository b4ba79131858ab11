//! Per-tenant settings. A secret is stored only sealed (see `secrets::seal_setting`); every
//! change bumps the tenant's `settings_version`, which takes a change sequence number, so
//! routers see it on the change feed, and writes its audit event (secrets redacted) in the same
//! transaction.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::FromRow;
use tenancy_core::{ErrorCode, OrgId, SettingKey, SettingType};

use sha2::Digest;

use super::{Actor, Store, Tx, audit};
use crate::error::ControlError;
use crate::secrets::SealedSetting;

/// A setting as stored: a plain value, or a sealed secret.
pub struct StoredSetting {
    pub key: SettingKey,
    pub kind: SettingType,
    pub value: StoredValue,
    pub updated_at: DateTime<Utc>,
}

pub enum StoredValue {
    Plain(Value),
    Sealed(SealedSetting),
}

impl StoredValue {
    /// Bytes it takes in the registry (counted against the tenant's cap).
    fn stored_bytes(&self) -> usize {
        match self {
            StoredValue::Plain(value) => value.to_string().len(),
            StoredValue::Sealed(sealed) => sealed.bytes.len(),
        }
    }
}

/// Who writes a setting, and the caps of the tenant's settings the write must stay within.
#[derive(Debug, Clone, Copy)]
pub struct SettingWrite {
    /// A platform admin's write (see [`Store::put_setting`]).
    pub by_platform: bool,
    /// Settings the tenant may have.
    pub max_count: u32,
    /// Bytes of values the tenant may keep.
    pub max_bytes: u64,
}

/// Values longer than this are audited as a digest, not copied into every audit event.
const AUDITED_VALUE_BYTES: usize = 1024;

#[derive(FromRow)]
struct SettingRow {
    #[sqlx(try_from = "String")]
    key: SettingKey,
    #[sqlx(rename = "type", try_from = "String")]
    kind: SettingType,
    /// JSON text.
    value: Option<String>,
    ciphertext: Option<Vec<u8>>,
    key_id: Option<String>,
    updated_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct OwnedSettingRow {
    #[sqlx(try_from = "String")]
    org_id: OrgId,
    #[sqlx(flatten)]
    setting: SettingRow,
}

impl TryFrom<SettingRow> for StoredSetting {
    type Error = ControlError;
    fn try_from(row: SettingRow) -> Result<Self, ControlError> {
        let value = match (row.value, row.ciphertext, row.key_id) {
            (Some(text), None, None) => {
                StoredValue::Plain(serde_json::from_str(&text).map_err(ControlError::corrupt)?)
            }
            (None, Some(bytes), Some(key_id)) => {
                StoredValue::Sealed(SealedSetting { key_id, bytes })
            }
            _ => {
                return Err(ControlError::Corrupt(format!(
                    "setting {} is neither plain nor sealed",
                    row.key
                )));
            }
        };
        Ok(StoredSetting {
            key: row.key,
            kind: row.kind,
            value,
            updated_at: row.updated_at,
        })
    }
}

/// The columns every query returns (a macro, so queries stay static strings).
macro_rules! columns {
    () => {
        "key, type, value, ciphertext, key_id, updated_at"
    };
}

impl StoredSetting {
    /// What the audit log keeps: never a secret's value.
    fn audited(&self) -> Value {
        match &self.value {
            StoredValue::Plain(value) => {
                let text = value.to_string();
                if text.len() > AUDITED_VALUE_BYTES {
                    let digest = hex::encode(sha2::Sha256::digest(text.as_bytes()));
                    json!({"key": self.key, "type": self.kind,
                           "value_sha256": digest, "value_bytes": text.len()})
                } else {
                    json!({"key": self.key, "type": self.kind, "value": without_nul(value)})
                }
            }
            StoredValue::Sealed(_) => {
                json!({"key": self.key, "type": self.kind, "value": "[redacted]"})
            }
        }
    }
}

impl Store {
    /// Every setting of a tenant, by key.
    pub async fn settings(&self, org_id: &OrgId) -> Result<Vec<StoredSetting>, ControlError> {
        self.run("settings", async {
            sqlx::query_as::<_, SettingRow>(concat!(
                "SELECT ",
                columns!(),
                " FROM tenant_settings WHERE org_id = $1 ORDER BY key"
            ))
            .bind(org_id.as_str())
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(StoredSetting::try_from)
            .collect()
        })
        .await
    }

    /// Sets a setting (insert or replace); returns it as stored.
    pub async fn put_setting(
        &self,
        org_id: &OrgId,
        key: &SettingKey,
        kind: SettingType,
        value: StoredValue,
        write: SettingWrite,
        actor: &Actor,
    ) -> Result<StoredSetting, ControlError> {
        let by_platform = write.by_platform;
        self.run("put_setting", async {
            let mut tx = self.begin().await?;
            // The tenant's row first (as everywhere): one tenant's writes take turns, so the
            // caps hold under racing writes.
            lock_for_settings(&mut tx, org_id).await?;
            let before = lock_setting(&mut tx, org_id, key).await?;
            refuse_platforms(&mut tx, org_id, key, by_platform).await?;
            check_caps(&mut tx, org_id, key, value.stored_bytes(), write).await?;
            let (plain, sealed) = match &value {
                StoredValue::Plain(v) => (Some(v.to_string()), None),
                StoredValue::Sealed(s) => (None, Some(s)),
            };
            let row = sqlx::query_as::<_, SettingRow>(concat!(
                "INSERT INTO tenant_settings (org_id, key, type, value, ciphertext, key_id,
                                              set_by_platform)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (org_id, key) DO UPDATE SET type = EXCLUDED.type,
                     value = EXCLUDED.value, ciphertext = EXCLUDED.ciphertext,
                     key_id = EXCLUDED.key_id, set_by_platform = EXCLUDED.set_by_platform,
                     updated_at = now()
                 RETURNING ",
                columns!(),
                ""
            ))
            .bind(org_id.as_str())
            .bind(key.as_str())
            .bind(kind.as_str())
            .bind(plain)
            .bind(sealed.map(|s| s.bytes.as_slice()))
            .bind(sealed.map(|s| s.key_id.as_str()))
            .bind(by_platform)
            .fetch_one(&mut *tx)
            .await?;
            let after = StoredSetting::try_from(row)?;
            // Last: the change feed's sequence lock is held from here to the commit.
            commit_setting_change(
                tx,
                actor,
                "setting.put",
                org_id,
                before.as_ref().map(StoredSetting::audited),
                Some(after.audited()),
            )
            .await?;
            Ok(after)
        })
        .await
    }

    /// Removes a setting; `false` when there was none.
    pub async fn delete_setting(
        &self,
        org_id: &OrgId,
        key: &SettingKey,
        by_platform: bool,
        actor: &Actor,
    ) -> Result<bool, ControlError> {
        self.run("delete_setting", async {
            let mut tx = self.begin().await?;
            lock_for_settings(&mut tx, org_id).await?;
            let Some(before) = lock_setting(&mut tx, org_id, key).await? else {
                return Ok(false);
            };
            refuse_platforms(&mut tx, org_id, key, by_platform).await?;
            sqlx::query("DELETE FROM tenant_settings WHERE org_id = $1 AND key = $2")
                .bind(org_id.as_str())
                .bind(key.as_str())
                .execute(&mut *tx)
                .await?;
            commit_setting_change(
                tx,
                actor,
                "setting.deleted",
                org_id,
                Some(before.audited()),
                None,
            )
            .await?;
            Ok(true)
        })
        .await
    }

    /// Secret settings sealed under another master key than `key_id` (to re-seal).
    pub async fn settings_to_reseal(
        &self,
        key_id: &str,
    ) -> Result<Vec<(OrgId, StoredSetting)>, ControlError> {
        self.run("settings_to_reseal", async {
            sqlx::query_as::<_, OwnedSettingRow>(concat!(
                "SELECT org_id, ",
                columns!(),
                " FROM tenant_settings
                 WHERE key_id IS NOT NULL AND key_id <> $1 ORDER BY org_id, key"
            ))
            .bind(key_id)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|row| Ok((row.org_id, StoredSetting::try_from(row.setting)?)))
            .collect()
        })
        .await
    }

    /// Replaces a sealed value with one sealed under another key, if it is still the one read
    /// (`previous_key_id`); the value is unchanged, so routers need not hear of it.
    pub async fn reseal_setting(
        &self,
        org_id: &OrgId,
        key: &SettingKey,
        previous_key_id: &str,
        sealed: &SealedSetting,
    ) -> Result<bool, ControlError> {
        self.run("reseal_setting", async {
            let done = sqlx::query(
                "UPDATE tenant_settings SET ciphertext = $4, key_id = $5
                 WHERE org_id = $1 AND key = $2 AND key_id = $3",
            )
            .bind(org_id.as_str())
            .bind(key.as_str())
            .bind(previous_key_id)
            .bind(&sealed.bytes)
            .bind(&sealed.key_id)
            .execute(self.pool())
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }
}

/// The audit log is jsonb, which cannot hold U+0000: it records one as U+FFFD.
fn without_nul(value: &Value) -> Value {
    let clean = |text: &str| text.replace('\0', "\u{FFFD}");
    match value {
        Value::String(text) => Value::String(clean(text)),
        Value::Array(items) => Value::Array(items.iter().map(without_nul).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (clean(k), without_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

async fn lock_setting(
    tx: &mut Tx,
    org_id: &OrgId,
    key: &SettingKey,
) -> Result<Option<StoredSetting>, ControlError> {
    sqlx::query_as::<_, SettingRow>(concat!(
        "SELECT ",
        columns!(),
        " FROM tenant_settings WHERE org_id = $1 AND key = $2 FOR UPDATE"
    ))
    .bind(org_id.as_str())
    .bind(key.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .map(StoredSetting::try_from)
    .transpose()
}

/// Locks the tenant's row for a settings write (not for a key change: readers go on).
async fn lock_for_settings(tx: &mut Tx, org_id: &OrgId) -> Result<(), ControlError> {
    sqlx::query("SELECT 1 FROM tenants WHERE org_id = $1 FOR NO KEY UPDATE")
        .bind(org_id.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))?;
    Ok(())
}

/// Refuses a write that would take the tenant past its caps: with `key` written at `bytes`,
/// its settings must number at most `max_count` and hold at most `max_bytes`.
async fn check_caps(
    tx: &mut Tx,
    org_id: &OrgId,
    key: &SettingKey,
    bytes: usize,
    write: SettingWrite,
) -> Result<(), ControlError> {
    let (others, other_bytes): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(coalesce(octet_length(value), 0)
                                       + coalesce(octet_length(ciphertext), 0)), 0)::bigint
         FROM tenant_settings WHERE org_id = $1 AND key <> $2",
    )
    .bind(org_id.as_str())
    .bind(key.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let count = u64::try_from(others).unwrap_or(0) + 1;
    let total = u64::try_from(other_bytes).unwrap_or(0) + bytes as u64;
    if count > u64::from(write.max_count) || total > write.max_bytes {
        return Err(ControlError::conflict(
            ErrorCode::SettingsLimit,
            format!(
                "tenant {org_id} may have {} settings of {} bytes in all; this one would make \
                 {count} of {total} bytes",
                write.max_count, write.max_bytes
            ),
        ));
    }
    Ok(())
}

/// Bumps the tenant's settings version (routers hear of it through the change feed), audits,
/// and commits. The version's trigger takes the change feed's sequence lock, held until the
/// commit: it comes last, so every other tenant's change waits the least.
async fn commit_setting_change(
    mut tx: Tx,
    actor: &Actor,
    action: &str,
    org_id: &OrgId,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), ControlError> {
    audit(&mut tx, actor, action, Some(org_id), before, after).await?;
    sqlx::query("UPDATE tenants SET settings_version = settings_version + 1 WHERE org_id = $1")
        .bind(org_id.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Refuses a change by a tenant admin (`by_platform` false) to a setting a platform admin made
/// (its row locked by the caller).
async fn refuse_platforms(
    tx: &mut Tx,
    org_id: &OrgId,
    key: &SettingKey,
    by_platform: bool,
) -> Result<(), ControlError> {
    if by_platform {
        return Ok(());
    }
    let platforms: Option<bool> = sqlx::query_scalar(
        "SELECT set_by_platform FROM tenant_settings WHERE org_id = $1 AND key = $2",
    )
    .bind(org_id.as_str())
    .bind(key.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    if platforms == Some(true) && key.as_str().starts_with(tenancy_core::FEATURE_PREFIX) {
        return Err(ControlError::conflict(
            tenancy_core::ErrorCode::Forbidden,
            format!("setting {key} was set by a platform admin: only a platform admin changes it"),
        ));
    }
    Ok(())
}
