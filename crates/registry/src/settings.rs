//! Command line and environment: every flag has an `env` twin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use secrecy::SecretString;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "tenancy-registry",
    about = "The tenant registry: onboards, suspends, re-tiers and deletes tenant databases over HTTP",
    after_help = "Example:\n  TENANCY_MASTER_KEY=... tenancy-registry --config deploy/local/tenancy.toml --listen 127.0.0.1:8080"
)]
pub struct Settings {
    /// Configuration file (servers, engine, tiers). See deploy/local/tenancy.toml.
    #[arg(long, env = "TENANCY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to serve the API on.
    #[arg(long, env = "TENANCY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// A static bearer token with every role, for local development. Refused unless the
    /// listen address is a loopback address.
    #[arg(long, env = "TENANCY_DEV_TOKEN", hide_env_values = true)]
    pub dev_token: Option<SecretString>,

    /// ZITADEL instance URL (the token issuer, compared exactly). Enables ZITADEL tokens.
    #[arg(long, env = "TENANCY_ZITADEL_ISSUER")]
    pub zitadel_issuer: Option<String>,

    /// The ZITADEL project whose id must be in a token's audience and whose roles count.
    #[arg(long, env = "TENANCY_ZITADEL_PROJECT_ID")]
    pub zitadel_project_id: Option<String>,

    /// Client id of the registry's API application, for introspecting opaque tokens.
    #[arg(long, env = "TENANCY_ZITADEL_CLIENT_ID")]
    pub zitadel_client_id: Option<String>,

    /// Client secret of that application.
    #[arg(long, env = "TENANCY_ZITADEL_CLIENT_SECRET", hide_env_values = true)]
    pub zitadel_client_secret: Option<SecretString>,

    /// Signing keys of the ZITADEL Actions target(s) that post organization events, comma
    /// separated (several during a key rotation).
    #[arg(long, env = "TENANCY_ZITADEL_WEBHOOK_KEYS", hide_env_values = true)]
    pub zitadel_webhook_keys: Option<SecretString>,

    /// Log format: `json` for machines, `text` for people; `auto` picks text on a terminal.
    #[arg(long, env = "TENANCY_LOG_FORMAT", value_enum, default_value = "auto")]
    pub log_format: LogFormat,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TENANCY_MAX_BODY", default_value_t = 64 * 1024)]
    pub max_body: usize,
}

impl Settings {
    /// Defaults for embedding the service (tests, tools): no configuration file, no
    /// authentication yet, text logs, 64 KiB bodies.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            config: None,
            listen,
            dev_token: None,
            zitadel_issuer: None,
            zitadel_project_id: None,
            zitadel_client_id: None,
            zitadel_client_secret: None,
            zitadel_webhook_keys: None,
            log_format: LogFormat::Text,
            max_body: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}
