//! Tenant and operation states, tiers, and the registry API's request and response bodies.

use std::fmt;
use std::num::NonZeroU16;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{
    DbName, Email, OrgId, PasswordEnv, PersonName, PgName, Region, RoleName, ServerHost, ServerId,
    Slug, TenantName, Tier,
};

/// A string that names no variant of a closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}, expected one of: {expected}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Closed sets stored as text in the registry and sent as snake_case strings in the API.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, UnknownVariant> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: s.chars().take(64).collect(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownVariant;
            fn try_from(value: String) -> Result<Self, UnknownVariant> {
                value.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where a tenant is in its lifecycle (DESIGN.md §4).
    TenantStatus, "status" {
        Provisioning => "provisioning",
        Active => "active",
        Suspended => "suspended",
        Failed => "failed",
        Deleting => "deleting",
        Deleted => "deleted",
    }
);

string_enum!(
    /// Where a tenant sits in the hierarchy: platform -> agency -> client. A client names its
    /// agency in `parent_org_id`; standalone tenants and agencies have no parent.
    TenantKind, "kind" {
        Standalone => "standalone",
        Agency => "agency",
        Client => "client",
    }
);

/// Where a tenant sits in the hierarchy: its kind and, for a client, its agency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPlace {
    pub kind: TenantKind,
    pub parent_org_id: Option<OrgId>,
}

impl TenantKind {
    /// The kind of a tenant that says none.
    pub fn standalone() -> Self {
        TenantKind::Standalone
    }
}

string_enum!(
    /// How a provisioning got its database.
    ProvisionPath, "provision path" {
        Warm => "warm",
        Cold => "cold",
    }
);

string_enum!(
    /// Whether a database server takes new tenants.
    ServerState, "server state" {
        Active => "active",
        Draining => "draining",
        Disabled => "disabled",
    }
);

string_enum!(
    /// What an operation does. `activate_admin` invites the organization's first admin in
    /// ZITADEL and grants `tenant_admin`; it is queued when a tenant with an `admin_email`
    /// becomes active, and runs beside the tenant's other operations. `rotate_credentials` gives
    /// the tenant's role a new password (a new generation, under the current master key).
    /// `converge` brings the server back to what the registry says of the tenant (queued by the
    /// reconciler).
    OperationKind, "operation kind" {
        Provision => "provision",
        Suspend => "suspend",
        Resume => "resume",
        Retier => "retier",
        Deprovision => "deprovision",
        Purge => "purge",
        ActivateAdmin => "activate_admin",
        RotateCredentials => "rotate_credentials",
        Converge => "converge",
        Move => "move",
    }
);

string_enum!(
    /// How a move copies a tenant's database: `online` (logical replication, then a short
    /// cutover) or `offline` (blocked for a dump and restore).
    MoveMode, "move mode" {
        Online => "online",
        Offline => "offline",
    }
);

string_enum!(
    OperationState, "operation state" {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
    }
);

string_enum!(
    /// One idempotent step of an operation. Each kind runs a fixed sequence of them (the
    /// control plane's `operations` module says which), then `done`.
    Step, "step" {
        Place => "place",
        Role => "role",
        ClaimSpare => "claim_spare",
        Database => "database",
        Lockdown => "lockdown",
        Verify => "verify",
        Activate => "activate",
        Block => "block",
        Unblock => "unblock",
        ApplyLimits => "apply_limits",
        DropDatabase => "drop_database",
        DropRole => "drop_role",
        InviteAdmin => "invite_admin",
        SetPassword => "set_password",
        Converge => "converge",
        CascadeClients => "cascade_clients",
        CheckMove => "check_move",
        TargetRole => "target_role",
        TargetDatabase => "target_database",
        Subscribe => "subscribe",
        CatchUp => "catch_up",
        Cutover => "cutover",
        Switch => "switch",
        RetireSource => "retire_source",
        Finish => "finish",
        Done => "done",
    }
);

/// `POST /v1/tenants`: onboard an organization. Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The ZITADEL organization. Required unless `create_org` asks the registry to create it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub org_id: Option<OrgId>,
    pub name: TenantName,
    /// Derived from `name` when absent; an explicit slug that is taken is a conflict, not renamed.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// A durable unit of control-plane work, as the registry API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Operation {
    pub id: Uuid,
    pub org_id: OrgId,
    pub kind: OperationKind,
    pub state: OperationState,
    pub step: Step,
    pub attempts: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The stable code of the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_code: Option<crate::ErrorCode>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The agency's operation that queued this one for its client (a suspend, resume or delete
    /// cascading from the agency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_operation_id: Option<Uuid>,
    /// A provisioning's way to its database: `warm` (a spare claimed from the warm pool) or
    /// `cold` (cloned from the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_path: Option<ProvisionPath>,
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

    #[test]
    fn integers_may_be_written_as_integral_floats_and_stay_in_range() {
        let server = |port: &str, capacity: &str| {
            serde_json::from_str::<AddServer>(&format!(
                r#"{{"id":"pg-1","region":"eu","host":"db.internal","port":{port},
                    "admin_user":"postgres","password_env":"TENANCY_SERVER_PASSWORD_PG1",
                    "capacity":{capacity}}}"#
            ))
        };
        let parsed = server("5433.0", "8.0").unwrap();
        assert_eq!((parsed.port.get(), parsed.capacity), (5433, 8));
        assert_eq!(server("5432", "649716").unwrap().capacity, 649_716);
        for (port, capacity) in [
            ("5432", "8.5"),
            ("5432", "-1"),
            ("5432", "4294967296"),
            ("5432", "1e300"),
            ("0", "8"),
            ("65536", "8"),
            ("5432.5", "8"),
            ("\"5432\"", "8"),
        ] {
            assert!(server(port, capacity).is_err(), "{port} {capacity}");
        }
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

/// `POST /v1/tenants/{org_id}/move`: move the tenant's database to another server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MoveTenant {
    /// The server to move to: active, in the tenant's region, with free capacity. Chosen like
    /// a placement (fewest tenants) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub server_id: Option<ServerId>,
    /// `online` when the source server has `wal_level = logical` and every table can be
    /// replicated, else `offline`. Asking for `online` when it is not possible is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub mode: Option<MoveMode>,
}

/// One move of a tenant's database between servers, as the registry API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantMove {
    pub operation_id: Uuid,
    pub org_id: OrgId,
    pub source_server_id: ServerId,
    pub target_server_id: ServerId,
    pub mode: MoveMode,
    /// Whether the mode was asked for (else chosen).
    pub mode_requested: bool,
    /// Bytes of the copy: the dump streamed (offline), or the source database's size (online).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_copied: Option<i64>,
    /// How far the target was behind the source when the cutover began, in bytes of WAL
    /// (online only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes_at_cutover: Option<i64>,
    /// How long the tenant could not write: from blocking it on the source to opening it on the
    /// target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<i64>,
    /// What the verification compared: tables, rows and the checksum of every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
    /// When the registry switched the tenant to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_at: Option<DateTime<Utc>>,
    /// The source database, renamed and closed, kept until `retained_until` (then dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_db_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_until: Option<DateTime<Utc>>,
    /// Why the move ended with the tenant left on the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    pub created_at: DateTime<Utc>,
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

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantChange {
    pub seq: i64,
    pub org_id: OrgId,
    pub status: TenantStatus,
    pub tier: Tier,
    /// Over its storage quota: writes fail until it is writable again.
    #[serde(default)]
    pub read_only: bool,
}

/// `GET /v1/changes`: changes after the requested sequence number, oldest first. `last_seq` is
/// the sequence number to ask after next time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeFeed {
    pub changes: Vec<TenantChange>,
    pub last_seq: i64,
}

/// A database server as the registry API shows it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Server {
    pub id: ServerId,
    pub region: Region,
    pub host: String,
    pub port: u16,
    pub capacity: u32,
    pub state: ServerState,
    pub template_version: Option<i32>,
    pub tenants: i64,
    /// Spare databases ready to be claimed (at the server's template version).
    pub spares: i64,
    pub sslmode: crate::SslMode,
}

/// `POST /v1/servers`: register a database server. It stays `disabled` until the registry has
/// prepared it (template created and migrated); its admin password is read, in every registry
/// process, from the environment variable `password_env` names, which must start with
/// `TENANCY_SERVER_PASSWORD_`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddServer {
    pub id: ServerId,
    pub region: Region,
    pub host: ServerHost,
    #[serde(default = "default_pg_port", deserialize_with = "integral::port")]
    #[cfg_attr(feature = "openapi", schema(value_type = u16, minimum = 1, maximum = 65535))]
    pub port: NonZeroU16,
    pub admin_user: PgName,
    pub password_env: PasswordEnv,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_database: Option<PgName>,
    /// How to encrypt connections to the server; `verify-full` by default (plain text on a
    /// loopback host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<crate::SslMode>,
    /// The CA that signs the server's certificate (PEM), when it is not a public one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 16384))]
    pub ca_pem: Option<String>,
    /// Most tenant databases the server may hold.
    #[serde(deserialize_with = "integral::number")]
    #[cfg_attr(feature = "openapi", schema(maximum = 2147483647))]
    pub capacity: u32,
}

pub(crate) use integral::number as integral_number;

/// JSON Schema counts `8.0` as an integer, and so do clients whose numbers are all floats:
/// wherever the OpenAPI document says `integer`, an integral number is accepted in either form.
mod integral {
    use std::num::NonZeroU16;

    use serde::de::{Error, Unexpected};
    use serde::{Deserialize, Deserializer};

    /// Largest integer a float holds exactly (2^53).
    const EXACT_IN_FLOAT: f64 = 9_007_199_254_740_992.0;

    pub fn number<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        let number = serde_json::Number::deserialize(d)?;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range checked
        let value = number.as_u64().or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..EXACT_IN_FLOAT).contains(f))
                .map(|f| f as u64)
        });
        value.and_then(|v| T::try_from(v).ok()).ok_or_else(|| {
            D::Error::invalid_value(
                Unexpected::Other(&number.to_string()),
                &"an integer in range",
            )
        })
    }

    pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<NonZeroU16, D::Error> {
        let port: u16 = number(d)?;
        NonZeroU16::new(port)
            .ok_or_else(|| D::Error::invalid_value(Unexpected::Unsigned(0), &"a port from 1"))
    }
}

fn default_pg_port() -> NonZeroU16 {
    NonZeroU16::new(5432).expect("non-zero")
}

/// `GET /v1/tenants/{org_id}/usage`: the figures now, the storage quota, and the sampler's
/// history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantUsage {
    pub org_id: OrgId,
    pub db_name: DbName,
    pub server_id: ServerId,
    pub size_bytes: i64,
    pub connections: i64,
    pub connection_limit: i32,
    /// The tier's storage quota; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_quota_bytes: Option<i64>,
    /// `size_bytes` as a percentage of the quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_used_percent: Option<f64>,
    /// Over quota: writes fail until usage falls below 95% or the tier grows.
    pub read_only: bool,
    /// The sampler's figures since `since` (24 hours by default), oldest first.
    pub history: Vec<UsageSample>,
}

/// One sample of a tenant's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageSample {
    pub sampled_at: DateTime<Utc>,
    pub size_bytes: i64,
    pub connections: i64,
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
