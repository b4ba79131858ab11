//! Database servers as the registry API takes and shows them.

use std::num::NonZeroU16;

use serde::{Deserialize, Serialize};

use super::states::ServerState;
use crate::ids::{PasswordEnv, PgName, Region, ServerHost, ServerId};
use crate::integral;

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
/// process, from the environment variable `password_env` names: the server's own,
/// `TENANCY_SERVER_PASSWORD_` and its id upper-cased (`-` as `_`), named by no other server. A
/// host that is not a loopback address takes `verify-ca` or `verify-full` only.
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

fn default_pg_port() -> NonZeroU16 {
    NonZeroU16::new(5432).expect("non-zero")
}

#[cfg(test)]
mod tests {
    use super::*;

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
