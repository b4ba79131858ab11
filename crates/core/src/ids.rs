//! Identifiers that reach SQL or a database server. Each is built only through a validating
//! constructor (`FromStr`, `TryFrom<String>` for serde), so invalid input never gets past the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused. The message names the field and the rule, never echoes more
/// than a short prefix of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub reason: String,
}

impl IdError {
    fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
pub const MAX_PG_IDENTIFIER: usize = 63;
/// Every tenant database and role starts with this prefix.
pub const TENANT_PREFIX: &str = "tenant_";
/// `tenant_template` is the template database, so no tenant may have this slug.
pub const RESERVED_SLUG: &str = "template";
/// Longest slug, leaving room in a 63-byte database name for the `tenant_` prefix.
pub const MAX_SLUG: usize = 48;
/// Longest slug derived from a name: room is left for a collision suffix up to `_9999`.
pub const MAX_DERIVED_SLUG: usize = MAX_SLUG - 5;

fn check_chars(
    kind: &'static str,
    value: &str,
    max: usize,
    first: impl Fn(char) -> bool,
    rest: impl Fn(char) -> bool,
    rule: &str,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::new(kind, "must not be empty"));
    }
    if value.len() > max {
        return Err(IdError::new(
            kind,
            format!("at most {max} bytes, got {}", value.len()),
        ));
    }
    let mut chars = value.chars();
    let ok = chars.next().is_some_and(&first) && chars.all(&rest);
    if !ok {
        return Err(IdError::new(kind, rule.to_string()));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, |$v:ident| $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str($v: &str) -> Result<Self, IdError> {
                $check?;
                Ok(Self($v.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A ZITADEL organization id: an opaque string (decimal digits in practice, never parsed as a number).
    OrgId, "org_id", |v| check_chars(
        "org_id", v, 64,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        "letters, digits, '-' and '_' only, starting with a letter or digit",
    )
);

string_id!(
    /// A tenant's short name: lowercase ASCII letters, digits and underscores, starting with a letter.
    Slug, "slug", |v| check_chars(
        "slug", v, MAX_SLUG,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        "lowercase letters, digits and '_' only, starting with a letter",
    ).and_then(|()| if v == RESERVED_SLUG {
        Err(IdError::new("slug", "'template' is reserved for the template database"))
    } else {
        Ok(())
    })
);

string_id!(
    /// A database server id from the configuration, e.g. `pg-us-east-1a`.
    ServerId, "server_id", |v| check_chars(
        "server_id", v, 63,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
        "lowercase letters, digits, '-' and '_' only",
    )
);

string_id!(
    /// A region name, e.g. `us-east-1`.
    Region, "region", |v| check_chars(
        "region", v, 32,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
        "lowercase letters, digits, '-' and '_' only",
    )
);

string_id!(
    /// A PostgreSQL database name owned by the control plane (`tenant_<slug>` or `tenant_template`).
    DbName, "db_name", |v| check_chars(
        "db_name", v, MAX_PG_IDENTIFIER,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        "lowercase letters, digits and '_' only, starting with a letter",
    )
);

string_id!(
    /// A PostgreSQL role name owned by the control plane.
    RoleName, "role_name", |v| check_chars(
        "role_name", v, MAX_PG_IDENTIFIER,
        |c| c.is_ascii_lowercase(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        "lowercase letters, digits and '_' only, starting with a letter",
    )
);

string_id!(
    /// An organization's display name: 1 to 128 characters of any script, no control characters,
    /// no leading or trailing white space.
    TenantName, "name", |v| {
        if v.trim().is_empty() {
            Err(IdError::new("name", "must not be empty"))
        } else if v.chars().count() > 128 {
            Err(IdError::new("name", "at most 128 characters"))
        } else if v.chars().any(char::is_control) {
            Err(IdError::new("name", "must not contain control characters"))
        } else if v.trim() != v {
            Err(IdError::new("name", "must not start or end with white space"))
        } else {
            Ok(())
        }
    }
);

string_id!(
    /// A database server's host: a DNS name or an IP address (no scheme, port, path or user).
    ServerHost, "host", |v| check_chars(
        "host", v, 253,
        |c| c.is_ascii_alphanumeric() || c == '[' || c == ':',
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'),
        "a DNS name or an IP address: letters, digits, '.', '-', ':' only",
    )
);

string_id!(
    /// A PostgreSQL user or database name given by an operator (a server's admin user, its
    /// maintenance database).
    PgName, "name", |v| check_chars(
        "name", v, MAX_PG_IDENTIFIER,
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_',
        "letters, digits and '_' only, starting with a letter or '_'",
    )
);

/// Every variable a server registered through the API may name for its password starts so: the
/// registry reads no other variable on a caller's say-so.
pub const SERVER_PASSWORD_PREFIX: &str = "TENANCY_SERVER_PASSWORD_";

string_id!(
    /// The environment variable holding a server's admin password:
    /// `TENANCY_SERVER_PASSWORD_<NAME>`.
    PasswordEnv, "password_env", |v| check_chars(
        "password_env", v, 100,
        |c| c.is_ascii_uppercase(),
        |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_',
        "TENANCY_SERVER_PASSWORD_ followed by capital letters, digits and '_'",
    ).and_then(|()| match v.strip_prefix(SERVER_PASSWORD_PREFIX) {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(IdError::new(
            "password_env",
            format!("must start with {SERVER_PASSWORD_PREFIX} and name a server"),
        )),
    })
);

impl Slug {
    /// The tenant database of this slug: `tenant_<slug>`, at most 55 bytes.
    pub fn db_name(&self) -> DbName {
        DbName(format!("{TENANT_PREFIX}{}", self.0))
    }

    /// The tenant's login role: the same name as its database (roles are cluster-wide, database
    /// names are unique across the fleet, so the pair never collides).
    pub fn role_name(&self) -> RoleName {
        RoleName(format!("{TENANT_PREFIX}{}", self.0))
    }
}

impl DbName {
    /// The database every tenant is cloned from.
    pub fn template() -> Self {
        DbName("tenant_template".to_owned())
    }

    /// Whether this name is in the namespace the control plane manages (`tenant_*`, not the template).
    pub fn is_tenant(&self) -> bool {
        self.0.starts_with(TENANT_PREFIX) && *self != Self::template()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_identifiers_are_refused() {
        let long = "a".repeat(200);
        for bad in [
            "",
            "a\"b",
            "a;drop",
            "a'b",
            "Ünïcode",
            "a b",
            "-lead",
            "x\u{0}y",
            &long,
        ] {
            assert!(bad.parse::<Slug>().is_err(), "slug {bad:?}");
            assert!(bad.parse::<DbName>().is_err(), "db {bad:?}");
        }
        assert!("template".parse::<Slug>().is_err(), "reserved slug");
        for bad in ["", "1;2", "12'3", "263 014", "日本", &long] {
            assert!(bad.parse::<OrgId>().is_err(), "org {bad:?}");
        }
        for bad in ["", " padded ", "a\nb", &long] {
            assert!(bad.parse::<TenantName>().is_err(), "name {bad:?}");
        }
    }

    #[test]
    fn good_identifiers_round_trip_through_serde() {
        let org: OrgId = serde_json::from_str("\"263014839178313731\"").unwrap();
        assert_eq!(org.as_str(), "263014839178313731");
        let slug: Slug = "acme_corp".parse().unwrap();
        assert_eq!(slug.db_name().as_str(), "tenant_acme_corp");
        assert!(serde_json::from_str::<Slug>("\"Robert'); DROP\"").is_err());
        assert!("Café Zürich; DROP".parse::<TenantName>().is_ok());
    }

    #[test]
    fn server_registration_fields_are_strict() {
        for good in ["db.example.com", "10.0.0.12", "::1", "[fe80::1]"] {
            assert!(good.parse::<ServerHost>().is_ok(), "{good}");
        }
        for bad in ["a b", "http://x", "x/y", "user@host", "-x", "", "h;drop"] {
            assert!(bad.parse::<ServerHost>().is_err(), "{bad}");
        }
        assert!(
            "TENANCY_SERVER_PASSWORD_EU_2"
                .parse::<PasswordEnv>()
                .is_ok()
        );
        for bad in [
            "TENANCY_MASTER_KEY",
            "TENANCY_SERVER_PASSWORD_",
            "TENANCY_ZITADEL_SERVICE_ACCOUNT_PAT",
            "tenancy_server_password_x",
            "PATH",
        ] {
            assert!(bad.parse::<PasswordEnv>().is_err(), "{bad}");
        }
        assert!("postgres".parse::<PgName>().is_ok());
        assert!("x\"; DROP".parse::<PgName>().is_err());
    }
}
