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

    /// Log format: `json` for machines, `text` for people; `auto` picks text on a terminal.
    #[arg(long, env = "TENANCY_LOG_FORMAT", value_enum, default_value = "auto")]
    pub log_format: LogFormat,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TENANCY_MAX_BODY", default_value_t = 64 * 1024)]
    pub max_body: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}
