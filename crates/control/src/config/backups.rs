//! `[backups]`: where tenant backups are stored and how they are taken.

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::ControlError;

/// Where backups go and how many run at once (`POST /v1/tenants/{org_id}/backups`,
/// `tenantctl backups`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupsConfig {
    /// The backup store: a directory (relative to the working directory) or a URL the
    /// `object_store` crate opens: `file:///abs/dir`, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix`. Credentials and endpoints come from the
    /// environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`), never from this file or the API.
    #[serde(default = "default_url")]
    pub url: String,
    /// Backups (and restores) running at once on one database server.
    #[serde(default = "default_per_server")]
    pub per_server: u32,
    /// How often one replica looks for tenants due a scheduled backup and for backups past
    /// retention (give or take a tenth, so replicas drift apart).
    #[serde(default = "default_schedule_every", with = "humantime_serde")]
    pub schedule_every: std::time::Duration,
    /// Take a `pre_delete` backup when a tenant is deleted (kept until the tenant is purged).
    #[serde(default = "default_true")]
    pub before_delete: bool,
    /// A restore drill this often: the scheduler verifies `drill_sample` tenants' newest
    /// backups, chosen at random, in scratch databases (as `tenantctl backups verify
    /// --sample`). Off when unset.
    #[serde(default, with = "humantime_serde")]
    pub drill_every: Option<std::time::Duration>,
    #[serde(default = "default_drill_sample")]
    pub drill_sample: usize,
    /// An age post-quantum public key (`age1pq1...`, made by `age-keygen -pq`, age 1.3 or
    /// later) every backup is also encrypted to, so that its holder can decrypt backups without
    /// the registry (`age -d -i key.txt`). Its private half must not be kept where the
    /// registry runs.
    #[serde(default)]
    pub break_glass_recipient: Option<String>,
    /// S3 only: the endpoint of an S3-compatible service (MinIO, Ceph, R2...); AWS's by
    /// default (or `AWS_ENDPOINT`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3 only: the bucket's region (or `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
    /// S3 only: allow a plain-HTTP endpoint (a store on the same host or network).
    #[serde(default)]
    pub allow_http: bool,
    /// S3 only: the environment variables holding the access key id and secret. Unset, the
    /// usual `AWS_*` variables, web identity token files and instance credentials are used.
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// The access key, read from the variables above (or set by an embedder).
    #[serde(skip)]
    pub access_key: Option<(String, SecretString)>,
}

impl Default for BackupsConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            per_server: default_per_server(),
            schedule_every: default_schedule_every(),
            before_delete: true,
            drill_every: None,
            drill_sample: default_drill_sample(),
            break_glass_recipient: None,
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id_env: None,
            secret_access_key_env: None,
            access_key: None,
        }
    }
}

impl BackupsConfig {
    /// Reads the access key from the variables the configuration names.
    pub(super) fn with_secrets(
        &mut self,
        read: impl Fn(&str) -> Result<SecretString, ControlError>,
    ) -> Result<(), ControlError> {
        use secrecy::ExposeSecret;
        match (&self.access_key_id_env, &self.secret_access_key_env) {
            (Some(id), Some(secret)) if self.access_key.is_none() => {
                let id = read(id)?.expose_secret().to_owned();
                self.access_key = Some((id, read(secret)?));
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(ControlError::Config(
                    "backups.access_key_id_env and backups.secret_access_key_env go together"
                        .into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The options the S3 builder gets from this configuration (after the environment's).
    pub fn s3_options(&self) -> Vec<(&'static str, String)> {
        use secrecy::ExposeSecret;
        let mut options = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            options.push(("aws_endpoint", endpoint.clone()));
        }
        if let Some(region) = &self.region {
            options.push(("aws_region", region.clone()));
        }
        if self.allow_http {
            options.push(("aws_allow_http", "true".to_owned()));
        }
        if let Some((id, secret)) = &self.access_key {
            options.push(("aws_access_key_id", id.clone()));
            options.push(("aws_secret_access_key", secret.expose_secret().to_owned()));
        }
        options
    }

    pub(super) fn validate(&self) -> Result<(), ControlError> {
        if self.schedule_every < std::time::Duration::from_millis(100) {
            return Err(ControlError::Config(
                "backups.schedule_every must be at least 100ms".into(),
            ));
        }
        if self.per_server == 0 {
            return Err(ControlError::Config(
                "backups.per_server must be at least 1".into(),
            ));
        }
        if let Some(recipient) = &self.break_glass_recipient {
            recipient.parse::<age::pq::Recipient>().map_err(|e| {
                ControlError::Config(format!(
                    "backups.break_glass_recipient is not an age post-quantum public key (age1pq1...): {e}"
                ))
            })?;
        }
        Ok(())
    }
}

fn default_url() -> String {
    ".local/backups".to_owned()
}

fn default_per_server() -> u32 {
    1
}

fn default_schedule_every() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

fn default_drill_sample() -> usize {
    1
}

fn default_true() -> bool {
    true
}
