//! `[[servers]]`: the database servers that hold tenant databases.

use secrecy::SecretString;
use serde::Deserialize;
use tenancy_core::{Region, ServerId, ServerState, SslMode};

/// A database server that holds tenant databases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub id: ServerId,
    pub region: Region,
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// A superuser (or a role with CREATEDB, CREATEROLE and membership in every tenant role).
    pub admin_user: String,
    /// The environment variable holding `admin_user`'s password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Set from `password_env` when the configuration is loaded, or directly by embedders.
    #[serde(skip)]
    pub password: Option<SecretString>,
    /// The maintenance database the engine connects to for DDL.
    #[serde(default = "default_admin_database")]
    pub admin_database: String,
    /// Most tenant databases this server may hold.
    pub capacity: u32,
    /// State given to a server the registry has not seen before; afterwards the registry's
    /// state (changed by `drain`) wins.
    #[serde(default = "default_state")]
    pub state: ServerState,
    /// How connections to the server are encrypted: `disable`, `require`, `verify-ca` or
    /// `verify-full`. Default: `verify-full`, or plain text on a loopback host.
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// A file with the CA that signs the server's certificate (PEM); the public web roots when
    /// unset. Read when the configuration is loaded.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The CA itself (from `ca_file`, or set by embedders and the API).
    #[serde(skip)]
    pub ca_pem: Option<String>,
    /// Spare databases kept on this server, overriding `[warm_pool] size`.
    #[serde(default)]
    pub warm_pool: Option<u32>,
    /// Allows `sslmode` `disable` or `require` (no certificate check) for a host that is not a
    /// loopback address: a network the operator trusts. Refused otherwise.
    #[serde(default)]
    pub allow_unverified_tls: bool,
    /// Archive this server's WAL for point-in-time restores (`wal_archive = {}` for the
    /// defaults); unset, it is not archived.
    #[serde(default)]
    pub wal_archive: Option<super::ServerArchive>,
}

impl ServerConfig {
    /// An active server with a password in hand (embedders and tests), capacity 1000, maintenance
    /// database `postgres`.
    pub fn new(
        id: ServerId,
        region: Region,
        host: impl Into<String>,
        port: u16,
        admin_user: impl Into<String>,
        password: SecretString,
    ) -> Self {
        Self {
            id,
            region,
            host: host.into(),
            port,
            admin_user: admin_user.into(),
            password_env: None,
            password: Some(password),
            admin_database: default_admin_database(),
            capacity: 1000,
            state: ServerState::Active,
            sslmode: None,
            ca_file: None,
            ca_pem: None,
            warm_pool: None,
            allow_unverified_tls: false,
            wal_archive: None,
        }
    }

    /// Refuses TLS settings that would send the admin password unverified: `verify-ca`
    /// without a CA (any publicly trusted certificate for any name would pass), and `disable`
    /// or `require` for a host that is not a loopback address unless allowed.
    pub fn check_tls(&self) -> Result<(), String> {
        let mode = self.sslmode();
        if mode == SslMode::VerifyCa && self.ca_pem.is_none() {
            return Err(format!(
                "server {}: sslmode verify-ca needs the server's CA (ca_file, or ca_pem through \
                 the API); with the public web roots any certificate for any name would pass: \
                 use verify-full",
                self.id
            ));
        }
        if matches!(mode, SslMode::Disable | SslMode::Require)
            && !tenancy_core::is_loopback_host(&self.host)
            && !self.allow_unverified_tls
        {
            return Err(format!(
                "server {}: sslmode {} sends the admin password to {} without checking who \
                 answers; use verify-ca or verify-full, or set allow_unverified_tls = true for a \
                 network you trust",
                self.id,
                mode.as_str(),
                self.host
            ));
        }
        Ok(())
    }

    /// How connections to the server are encrypted.
    pub fn sslmode(&self) -> SslMode {
        self.sslmode
            .unwrap_or_else(|| SslMode::default_for(&self.host))
    }
}

fn default_port() -> u16 {
    5432
}

fn default_admin_database() -> String {
    "postgres".into()
}

fn default_state() -> ServerState {
    ServerState::Active
}
