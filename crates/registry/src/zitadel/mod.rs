//! The registry's side of ZITADEL, built from the settings: the token verifier, and the service
//! account's management client behind admin activation, organization creation and the sync
//! (`org_sync`: organization events and the periodic comparison, applied to tenants).

pub mod org_sync;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tenancy_control::{ActivationError, AdminActivation, AdminActivator};
use tenancy_core::{OrgAdmin, OrgId, TenantKind, TenantName};
use tenancy_zitadel::{
    HumanUser, IntrospectionClient, KeyFile, Management, ManagementConfig, ManagementError,
    Organization, Paging, ServiceAccount, Verifier, VerifierConfig, roles,
};

use crate::settings::{AutoOnboard, ListPaging, Settings};

/// The token verifier, when an issuer is configured.
pub fn verifier(settings: &Settings) -> anyhow::Result<Option<Verifier>> {
    let Some(issuer) = &settings.zitadel.issuer else {
        return Ok(None);
    };
    let project = project_id(settings)?;
    let mut config = VerifierConfig::new(issuer.trim_end_matches('/'), project);
    config.platform_org_id = Some(settings.zitadel.platform_org_id.clone().context(
        "TENANCY_ZITADEL_PLATFORM_ORG_ID is required with TENANCY_ZITADEL_ISSUER: platform roles \
         count only when granted in the platform's own organization",
    )?);
    config.introspection = match (
        &settings.zitadel.client_id,
        &settings.zitadel.client_secret,
        &settings.zitadel.application_key_file,
    ) {
        (Some(client_id), Some(client_secret), _) => Some(IntrospectionClient::Secret {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
        }),
        (_, _, Some(path)) => Some(IntrospectionClient::PrivateKeyJwt(
            KeyFile::from_path(path).context("TENANCY_ZITADEL_APPLICATION_KEY_FILE")?,
        )),
        _ => None,
    };
    Ok(Some(Verifier::new(config)))
}

fn project_id(settings: &Settings) -> anyhow::Result<String> {
    settings
        .zitadel
        .project_id
        .clone()
        .context("TENANCY_ZITADEL_PROJECT_ID is required with TENANCY_ZITADEL_ISSUER")
}

/// The management API as the registry's service account.
pub struct Identity {
    management: Management,
    project_id: String,
    ignored: BTreeSet<OrgId>,
    /// Whether new organizations are placed from their metadata.
    placement_metadata: bool,
    /// Which new organizations events and the sync onboard.
    auto_onboard: AutoOnboard,
    pub sync_interval: Duration,
    pub sync_max_deletes: usize,
    /// See [`org_id_for`].
    org_id_key: [u8; 32],
}

impl Identity {
    /// Built when an issuer and a service account (PAT or key file) are configured;
    /// `org_id_key` keeps the ids of the organizations it creates unguessable.
    pub fn from_settings(
        settings: &Settings,
        org_id_key: [u8; 32],
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let account = match (
            &settings.zitadel.service_account_pat,
            &settings.zitadel.service_account_key_file,
        ) {
            (Some(pat), _) => ServiceAccount::Pat(pat.clone()),
            (_, Some(path)) => ServiceAccount::KeyFile(
                KeyFile::from_path(path).context("TENANCY_ZITADEL_SERVICE_ACCOUNT_KEY_FILE")?,
            ),
            (None, None) => return Ok(None),
        };
        let issuer = settings.zitadel.issuer.as_deref().context(
            "TENANCY_ZITADEL_ISSUER is required with a service account (PAT or key file)",
        )?;
        let mut config = ManagementConfig::new(issuer.trim_end_matches('/'), account);
        config.paging = match settings.zitadel.list_paging {
            ListPaging::Query => Paging::Query,
            ListPaging::Pagination => Paging::Pagination,
        };
        Ok(Some(Arc::new(Self {
            management: Management::new(config)?,
            project_id: project_id(settings)?,
            ignored: settings.ignored_orgs(),
            placement_metadata: settings.zitadel.placement_metadata,
            auto_onboard: settings.zitadel.auto_onboard,
            sync_interval: settings.zitadel.org_sync_interval,
            sync_max_deletes: settings.zitadel.org_sync_max_deletes,
            org_id_key,
        })))
    }

    pub fn management(&self) -> &Management {
        &self.management
    }

    /// The id [`Identity::create_org`] gives an organization of this name.
    pub fn org_id_for(&self, name: &TenantName) -> OrgId {
        org_id_for(&self.org_id_key, name.as_str())
    }

    /// Organizations that are never tenants (the platform's own).
    pub fn is_ignored(&self, org_id: &str) -> bool {
        self.ignored.contains(org_id)
    }

    /// Creates the organization in ZITADEL (or finds the one an earlier attempt of the same
    /// request made) and returns its id. Its place (an agency, or a client of one) is written
    /// to its metadata, so ZITADEL tells the same story as the registry.
    pub async fn create_org(
        &self,
        name: &TenantName,
        admin: Option<&OrgAdmin>,
        place: &Placement,
    ) -> Result<OrgId, ManagementError> {
        let admin = admin.map(human_user);
        let id = self.org_id_for(name);
        let org: Organization = self
            .management
            .create_organization(id.as_str(), name.as_str(), admin.as_ref())
            .await?;
        if let Some(kind) = place.kind {
            self.management
                .set_org_metadata(&org.id, KIND_METADATA, kind.as_str())
                .await?;
        }
        if let Some(agency) = &place.parent_org_id {
            self.management
                .set_org_metadata(&org.id, AGENCY_METADATA, agency.as_str())
                .await?;
        }
        org.id
            .parse()
            .map_err(|e| ManagementError::Protocol(format!("organization id {:?}: {e}", org.id)))
    }

    /// Whether events and the sync onboard this new organization (see
    /// `--zitadel-auto-onboard`).
    pub async fn may_onboard(&self, org_id: &OrgId) -> Result<bool, ManagementError> {
        match self.auto_onboard {
            AutoOnboard::All => Ok(true),
            AutoOnboard::None => Ok(false),
            AutoOnboard::Marked => Ok(self
                .management
                .org_metadata(org_id.as_str(), ONBOARD_METADATA)
                .await?
                .is_some_and(|v| v.trim() == "true")),
        }
    }

    /// Whether new organizations are onboarded only once marked.
    pub fn onboards_marked_only(&self) -> bool {
        self.auto_onboard == AutoOnboard::Marked
    }

    /// Whether new organizations are placed from their metadata.
    pub fn places_from_metadata(&self) -> bool {
        self.placement_metadata
    }

    /// Where the organization's metadata places its tenant; nothing when placement from
    /// metadata is off. A value that is not a kind or an organization id is an error, never a
    /// standalone tenant.
    pub async fn placement(&self, org_id: &OrgId) -> Result<Placement, ManagementError> {
        if !self.placement_metadata {
            return Ok(Placement::default());
        }
        let read = |key: &'static str| self.management.org_metadata(org_id.as_str(), key);
        let unusable = |key: &str, e: String| {
            ManagementError::Protocol(format!("organization {org_id} metadata {key}: {e}"))
        };
        let kind = read(KIND_METADATA)
            .await?
            .map(|v| v.trim().parse::<TenantKind>())
            .transpose()
            .map_err(|e| unusable(KIND_METADATA, e.to_string()))?;
        let parent_org_id = read(AGENCY_METADATA)
            .await?
            .map(|v| v.trim().parse::<OrgId>())
            .transpose()
            .map_err(|e| unusable(AGENCY_METADATA, e.to_string()))?;
        Ok(Placement {
            kind,
            parent_org_id,
        })
    }
}

/// Organization metadata approving an organization for onboarding (`true`), with
/// `--zitadel-auto-onboard marked`.
pub const ONBOARD_METADATA: &str = "tenancy.onboard";

/// Organization metadata naming the tenant's kind (`agency`, `client`, `standalone`).
pub const KIND_METADATA: &str = "tenancy.kind";
/// Organization metadata naming a client's agency (its organization id).
pub const AGENCY_METADATA: &str = "tenancy.agency";

/// Where a new organization's tenant goes: its kind and, for a client, its agency (unset: a
/// standalone tenant, or a client when an agency is named).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TenantKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_org_id: Option<OrgId>,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.kind.is_none() && self.parent_org_id.is_none()
    }
}

fn human_user(admin: &OrgAdmin) -> HumanUser {
    let mut user = HumanUser::from_email(admin.email.as_str());
    if let Some(given) = &admin.given_name {
        user.given_name = given.to_string();
    }
    if let Some(family) = &admin.family_name {
        user.family_name = family.to_string();
    }
    user
}

/// The id the registry gives an organization it creates: derived from the name, so a repeated
/// request finds the organization the first one made (ZITADEL's creates are not idempotent,
/// and names are unique in an instance), under a secret of the registry's (`key`), so nobody
/// else can tell it in advance and create an organization of that id first to have it adopted.
/// 18 decimal digits, like ZITADEL's own ids.
pub fn org_id_for(key: &[u8; 32], name: &str) -> OrgId {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(format!("tenancy-org:{name}").as_bytes());
    let digest = mac.finalize().into_bytes();
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % 10u64.pow(17);
    format!("9{n:017}")
        .parse()
        .expect("digits are a valid org id")
}

impl AdminActivator for Identity {
    fn activate_admin<'a>(
        &'a self,
        activation: &'a AdminActivation,
    ) -> BoxFuture<'a, Result<String, ActivationError>> {
        Box::pin(async move {
            let user = HumanUser::from_email(&activation.email);
            self.management
                .activate_admin(
                    activation.org_id.as_str(),
                    &user,
                    &self.project_id,
                    roles::TENANT_ADMIN,
                )
                .await
                .map(|admin| admin.user_id)
                .map_err(|e| ActivationError {
                    retryable: e.is_retryable(),
                    message: e.to_string(),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organization_ids_are_stable_per_name_and_look_like_zitadel_ids() {
        let key = [7u8; 32];
        let a = org_id_for(&key, "Acme Corp");
        assert_eq!(a, org_id_for(&key, "Acme Corp"));
        assert_ne!(a, org_id_for(&key, "Acme Corp."));
        assert_ne!(
            a,
            org_id_for(&[8u8; 32], "Acme Corp"),
            "another registry's key"
        );
        assert_eq!(a.as_str().len(), 18);
        assert!(a.as_str().chars().all(|c| c.is_ascii_digit()));
    }
}
