//! Tenants as the registry API takes and shows them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::states::{TenantKind, TenantStatus};
use crate::ids::{
    DbName, Email, OrgId, PersonName, Region, RoleName, ServerId, Slug, TenantName, Tier,
};

/// `POST /v1/tenants`: onboard an organization. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The ZITADEL organization. Required unless `create_org` asks the registry to create it.
    #[serde(
        default,
        deserialize_with = "crate::present::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub org_id: Option<OrgId>,
    pub name: TenantName,
    /// Derived from `name` when absent (from `org_id`, as `org_<org_id>`, for a name with no
    /// letter or digit); an explicit slug that is taken is a conflict, not renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<Slug>,
    /// The configured default region when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// `client` when `parent_org_id` is given, `standalone` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TenantKind>,
    /// A client's agency: an agency tenant that is active or provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_org_id: Option<OrgId>,
    /// The organization's first admin: invited in ZITADEL and granted `tenant_admin` once the
    /// database is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<Email>,
    /// Create the organization in ZITADEL first (instead of giving `org_id`).
    #[serde(
        default,
        deserialize_with = "crate::present::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub create_org: Option<CreateOrg>,
}

impl CreateTenant {
    /// Onboarding `org_id` as `name`, everything else defaulted.
    pub fn new(org_id: OrgId, name: TenantName) -> Self {
        Self {
            org_id: Some(org_id),
            name,
            slug: None,
            region: None,
            tier: None,
            kind: None,
            parent_org_id: None,
            admin_email: None,
            create_org: None,
        }
    }
}

/// An organization for the registry to create in ZITADEL. Creation is idempotent per name: the
/// same request again finds the organization the first one made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// The tenant's `name` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<TenantName>,
    /// Made the organization's owner in ZITADEL, then invited and granted `tenant_admin`.
    #[serde(
        default,
        deserialize_with = "crate::present::present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub admin: Option<OrgAdmin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrgAdmin {
    pub email: Email,
    /// The e-mail address's local part when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<PersonName>,
    /// "Admin" when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<PersonName>,
}

/// A tenant as the registry API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    pub org_id: OrgId,
    pub name: TenantName,
    pub slug: Slug,
    pub db_name: DbName,
    pub server_id: Option<ServerId>,
    pub region: Region,
    pub tier: Tier,
    pub status: TenantStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// Who suspended the tenant (while it is suspended): who may resume it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_by: Option<crate::SuspendedBy>,
    pub kind: TenantKind,
    /// A client's agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_org_id: Option<OrgId>,
    pub schema_version: Option<i32>,
    /// The organization's first admin, invited once the database is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_email: Option<String>,
    /// Why the last fleet migration of this tenant failed (cleared by a successful one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_migration_error: Option<String>,
    /// Over its storage quota: sessions are read-only until usage falls below 95% of the quota
    /// or the tier grows.
    #[serde(default)]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    /// The tenant's login role: named like its database.
    pub fn role_name(&self) -> RoleName {
        self.slug.role_name()
    }
}

/// `PATCH /v1/tenants/{org_id}`: rename and/or re-tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<TenantName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
}

/// `GET /v1/tenants/{org_id}/connection`: what a router needs to reach the tenant database.
/// The password is present only while the tenant is active.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionInfo {
    pub org_id: OrgId,
    pub host: String,
    pub port: u16,
    pub dbname: DbName,
    pub user: RoleName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub server_id: ServerId,
    pub status: TenantStatus,
    pub tier: Tier,
    /// Whether the tenant is an agency, a client of one, or neither.
    #[serde(default = "TenantKind::standalone")]
    pub kind: TenantKind,
    /// A client's agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_org_id: Option<OrgId>,
    /// A client's agency's status: product services do not let an agency's users act in its
    /// clients while the agency is not active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_status: Option<TenantStatus>,
    /// Connections one router process may keep for this tenant.
    pub pool_size: u32,
    /// How to encrypt connections to the server.
    pub sslmode: crate::SslMode,
    /// The CA that signs the server's certificate (PEM), when it is not a public one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionInfo")
            .field("org_id", &self.org_id)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("status", &self.status)
            .field("tier", &self.tier)
            .finish()
    }
}

/// `GET /v1/tenants/{org_id}/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantHealth {
    pub org_id: OrgId,
    pub status: TenantStatus,
    /// Whether the database server answered.
    pub reachable: bool,
    pub database_exists: bool,
    pub schema_version: Option<i32>,
    pub template_version: Option<i32>,
    /// The last operation's error, if it failed or is retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_refuses_unknown_fields_and_bad_ids() {
        let ok = r#"{"org_id":"263014839178313731","name":"Acme Corp"}"#;
        assert!(serde_json::from_str::<CreateTenant>(ok).is_ok());
        let unknown = r#"{"org_id":"1","name":"Acme","owner":"x"}"#;
        assert!(serde_json::from_str::<CreateTenant>(unknown).is_err());
        let hostile = r#"{"org_id":"1; DROP TABLE tenants","name":"Acme"}"#;
        assert!(serde_json::from_str::<CreateTenant>(hostile).is_err());
    }

    #[test]
    fn closed_sets_parse_their_names_only() {
        assert_eq!(
            "suspended".parse::<TenantStatus>().unwrap(),
            TenantStatus::Suspended
        );
        assert!("bogus".parse::<TenantStatus>().is_err());
    }
}
