//! Identifiers that reach SQL or a database server. Each is built only through a validating
//! constructor (`FromStr`, `TryFrom<String>` for serde), so invalid input never gets past the edge.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

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

/// Characters that are control characters (Unicode `Cc`).
macro_rules! controls {
    () => {
        r"\u0000-\u001f\u007f-\u009f"
    };
}
/// Control characters and white space (Unicode `Cc` and `White_Space`).
macro_rules! blanks {
    () => {
        r"\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
    };
}
/// Display text: no control characters, no white space at either end.
macro_rules! display_text {
    () => {
        concat!(
            "^[^",
            blanks!(),
            "](?:[^",
            controls!(),
            "]*[^",
            blanks!(),
            "])?$"
        )
    };
}

/// Checks `value` against a rule: not empty, at most `max` characters, matching `pattern`.
/// The same pattern and limit are published in the OpenAPI document, so a value the document
/// allows is never refused (patterns use only what Rust's regex, ECMAScript and Python share).
fn check(
    kind: &'static str,
    value: &str,
    max: usize,
    pattern: &regex::Regex,
    rule: &str,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::new(kind, "must not be empty"));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(IdError::new(
            kind,
            format!("at most {max} characters, got {chars}"),
        ));
    }
    if !pattern.is_match(value) {
        return Err(IdError::new(kind, rule.to_string()));
    }
    Ok(())
}

/// A validated string identifier: `pattern` and `max` (characters) are its rule, checked here
/// and published as its OpenAPI schema; `extra` checks what a pattern cannot (with
/// `schema_pattern` saying the same to the document).
macro_rules! string_id {
    (
        $(#[doc = $doc:literal])*
        $name:ident, $kind:literal,
        max = $max:expr,
        pattern = $pattern:expr,
        rule = $rule:literal
        $(, schema_pattern = $schema_pattern:expr, extra = |$v:ident| $extra:expr)?
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest value, in characters.
            pub const MAX: usize = $max;
            /// The pattern of the OpenAPI document.
            pub const PATTERN: &'static str = string_id!(@schema_pattern $pattern $(, $schema_pattern)?);

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                static PATTERN: LazyLock<regex::Regex> =
                    LazyLock::new(|| regex::Regex::new($pattern).expect("a valid pattern"));
                check($kind, value, $max, &PATTERN, $rule)?;
                $(
                    let $v = value;
                    $extra?;
                )?
                Ok(Self(value.to_owned()))
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

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(concat!($($doc, "\n"),*).trim()))
                    .min_length(Some(1))
                    .max_length(Some($max))
                    .pattern(Some(Self::PATTERN))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
    (@schema_pattern $pattern:expr) => { $pattern };
    (@schema_pattern $pattern:expr, $schema_pattern:expr) => { $schema_pattern };
}

string_id!(
    /// A ZITADEL organization id: an opaque string (decimal digits in practice, never parsed as a
    /// number): letters, digits, `-` and `_`, starting with a letter or digit.
    OrgId, "org_id",
    max = 64,
    pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
    rule = "letters, digits, '-' and '_' only, starting with a letter or digit"
);

string_id!(
    /// A tenant's short name: lowercase ASCII letters, digits and underscores, starting with a
    /// letter; `template` is reserved.
    Slug, "slug",
    max = MAX_SLUG,
    pattern = r"^[a-z][a-z0-9_]*$",
    rule = "lowercase letters, digits and '_' only, starting with a letter",
    schema_pattern = r"^(?!template$)[a-z][a-z0-9_]*$",
    extra = |v| if v == RESERVED_SLUG {
        Err(IdError::new("slug", "'template' is reserved for the template database"))
    } else {
        Ok(())
    }
);

string_id!(
    /// A database server id, e.g. `pg-us-east-1a`.
    ServerId, "server_id",
    max = 63,
    pattern = r"^[a-z0-9][a-z0-9_-]*$",
    rule = "lowercase letters, digits, '-' and '_' only"
);

string_id!(
    /// A region name, e.g. `us-east-1`.
    Region, "region",
    max = 32,
    pattern = r"^[a-z0-9][a-z0-9_-]*$",
    rule = "lowercase letters, digits, '-' and '_' only"
);

string_id!(
    /// A service tier's name (`free`, `professional`): the tiers are the configuration's, and
    /// the registry's OpenAPI document lists the ones it serves.
    Tier, "tier",
    max = 32,
    pattern = r"^[a-z][a-z0-9_]*$",
    rule = "lowercase letters, digits and '_' only, starting with a letter"
);

string_id!(
    /// A product quota's name (`users`, `api_calls`): the tiers of the configuration define them.
    QuotaName, "resource",
    max = 32,
    pattern = r"^[a-z][a-z0-9_]*$",
    rule = "lowercase letters, digits and '_' only, starting with a letter"
);

string_id!(
    /// A feature's name (`sso`, `audit_export`): a tier's default features and a tenant's
    /// `features.<name>` settings.
    FeatureName, "feature",
    max = 32,
    pattern = r"^[a-z][a-z0-9_]*$",
    rule = "lowercase letters, digits and '_' only, starting with a letter"
);

string_id!(
    /// A tenant setting's key: dotted lowercase names (`smtp.password`, `features.sso`).
    SettingKey, "key",
    max = 128,
    pattern = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$",
    rule = "dot-separated names of lowercase letters, digits and '_', each starting with a letter"
);

string_id!(
    /// A key that makes a usage increment count once (a request id, an event id): printable
    /// ASCII without spaces.
    IdempotencyKey, "idempotency_key",
    max = 128,
    pattern = r"^[!-~]+$",
    rule = "printable ASCII without spaces"
);

string_id!(
    /// A PostgreSQL database name owned by the control plane (`tenant_<slug>` or
    /// `tenant_template`).
    DbName, "db_name",
    max = MAX_PG_IDENTIFIER,
    pattern = r"^[a-z][a-z0-9_]*$",
    rule = "lowercase letters, digits and '_' only, starting with a letter"
);

string_id!(
    /// A PostgreSQL role name owned by the control plane.
    RoleName, "role_name",
    max = MAX_PG_IDENTIFIER,
    pattern = r"^[a-z][a-z0-9_]*$",
    rule = "lowercase letters, digits and '_' only, starting with a letter"
);

string_id!(
    /// An organization's display name: 1 to 128 characters of any script, no control
    /// characters, no white space at either end.
    TenantName, "name",
    max = 128,
    pattern = display_text!(),
    rule = "no control characters and no white space at either end"
);

string_id!(
    /// A person's given or family name: 1 to 200 characters, no control characters, no white
    /// space at either end.
    PersonName, "person name",
    max = 200,
    pattern = display_text!(),
    rule = "no control characters and no white space at either end"
);

string_id!(
    /// An e-mail address: a local part, `@`, and a domain with a dot inside it; no white space,
    /// no control characters, one `@`.
    Email, "email",
    max = 254,
    pattern = concat!(
        "^[^@", blanks!(), "]+@[^@.", blanks!(), "][^@", blanks!(), "]*[.][^@", blanks!(),
        "]*[^@.", blanks!(), "]$"
    ),
    rule = "an e-mail address such as admin@example.com"
);

string_id!(
    /// A database server's host: a DNS name or an IP address (no scheme, port, path or user).
    ServerHost, "host",
    max = 253,
    pattern = r"^[A-Za-z0-9:\[][A-Za-z0-9.:\[\]-]*$",
    rule = "a DNS name or an IP address: letters, digits, '.', '-', ':' only"
);

string_id!(
    /// A PostgreSQL user or database name given by an operator (a server's admin user, its
    /// maintenance database).
    PgName, "name",
    max = MAX_PG_IDENTIFIER,
    pattern = r"^[A-Za-z_][A-Za-z0-9_]*$",
    rule = "letters, digits and '_' only, starting with a letter or '_'"
);

/// Every variable a server registered through the API may name for its password starts so: the
/// registry reads no other variable on a caller's say-so.
pub const SERVER_PASSWORD_PREFIX: &str = "TENANCY_SERVER_PASSWORD_";

string_id!(
    /// The environment variable holding a server's admin password:
    /// `TENANCY_SERVER_PASSWORD_<NAME>`.
    PasswordEnv, "password_env",
    max = 100,
    pattern = r"^TENANCY_SERVER_PASSWORD_[A-Z0-9_]+$",
    rule = "TENANCY_SERVER_PASSWORD_ followed by capital letters, digits and '_'"
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
    fn display_text_and_addresses_follow_their_published_rules() {
        for good in ["Acme", "Café Zürich", "a b", "日本", "x\u{feff}"] {
            assert!(good.parse::<TenantName>().is_ok(), "{good:?}");
            assert!(good.parse::<PersonName>().is_ok(), "{good:?}");
        }
        for bad in [
            " a",
            "a ",
            "a\u{3000}",
            "\u{a0}a",
            "a\tb",
            "x\u{85}y",
            "a\u{7f}",
        ] {
            assert!(bad.parse::<TenantName>().is_err(), "{bad:?}");
        }
        assert!("x".repeat(128).parse::<TenantName>().is_ok());
        assert!(
            "é".repeat(129).parse::<TenantName>().is_err(),
            "characters, not bytes"
        );
        for good in ["ann@lane.example", "a@b.c", "ä@ö.ü", "a.b+c@d.e.f"] {
            assert!(good.parse::<Email>().is_ok(), "{good:?}");
        }
        for bad in [
            "a@b", "@b.c", "a@.b", "a@b.", "a b@c.d", "a@b@c.d", "a@b.c\n", "a",
        ] {
            assert!(bad.parse::<Email>().is_err(), "{bad:?}");
        }
        // The published pattern says what the check says, reserved slug included.
        assert!(Slug::PATTERN.starts_with("^(?!template$)"));
        assert_eq!(OrgId::MAX, 64);
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
