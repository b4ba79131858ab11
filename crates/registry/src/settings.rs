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

    /// A static bearer token with every role, for local development: at least 32 characters,
    /// refused unless the listen address is a loopback address, and refused when ZITADEL tokens
    /// are on (TENANCY_ZITADEL_ISSUER).
    #[arg(long, env = "TENANCY_DEV_TOKEN", hide_env_values = true)]
    pub dev_token: Option<SecretString>,

    /// ZITADEL instance URL (the token issuer, compared exactly). Enables ZITADEL tokens.
    #[arg(long, env = "TENANCY_ZITADEL_ISSUER")]
    pub zitadel_issuer: Option<String>,

    /// The ZITADEL project whose id must be in a token's audience and whose roles count.
    #[arg(long, env = "TENANCY_ZITADEL_PROJECT_ID")]
    pub zitadel_project_id: Option<String>,

    /// The platform's own organization: `platform_admin` and `tenant_router` count only when
    /// granted there. Required with TENANCY_ZITADEL_ISSUER; never onboarded as a tenant.
    #[arg(long, env = "TENANCY_ZITADEL_PLATFORM_ORG_ID")]
    pub zitadel_platform_org_id: Option<tenancy_core::OrgId>,

    /// Client id of the registry's API application, for introspecting opaque tokens.
    #[arg(long, env = "TENANCY_ZITADEL_CLIENT_ID")]
    pub zitadel_client_id: Option<String>,

    /// Client secret of that application.
    #[arg(long, env = "TENANCY_ZITADEL_CLIENT_SECRET", hide_env_values = true)]
    pub zitadel_client_secret: Option<SecretString>,

    /// Instead of a client secret: the API application's key file (JSON, from ZITADEL's
    /// console), for private-key JWT introspection.
    #[arg(
        long,
        env = "TENANCY_ZITADEL_APPLICATION_KEY_FILE",
        conflicts_with = "zitadel_client_secret"
    )]
    pub zitadel_application_key_file: Option<PathBuf>,

    /// Personal access token of the service account that calls ZITADEL's management API
    /// (admin invitations, organization creation and sync).
    #[arg(
        long,
        env = "TENANCY_ZITADEL_SERVICE_ACCOUNT_PAT",
        hide_env_values = true
    )]
    pub zitadel_service_account_pat: Option<SecretString>,

    /// Instead of a PAT: the service account's key file (JSON), for the JWT profile grant.
    #[arg(
        long,
        env = "TENANCY_ZITADEL_SERVICE_ACCOUNT_KEY_FILE",
        conflicts_with = "zitadel_service_account_pat"
    )]
    pub zitadel_service_account_key_file: Option<PathBuf>,

    /// How list calls page on your ZITADEL version: `query` or `pagination`.
    #[arg(
        long,
        env = "TENANCY_ZITADEL_LIST_PAGING",
        value_enum,
        default_value = "query"
    )]
    pub zitadel_list_paging: ListPaging,

    /// How often the organization sync compares ZITADEL's organizations with the tenants and
    /// converges (the safety net for missed events); `0s` turns it off. Needs a service account.
    #[arg(long, env = "TENANCY_ZITADEL_ORG_SYNC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub zitadel_org_sync_interval: std::time::Duration,

    /// The most tenants one sync run may delete (organizations gone from ZITADEL). More is taken
    /// for a misconfiguration (a wrong instance): the run deletes none and logs an error.
    #[arg(
        long,
        env = "TENANCY_ZITADEL_ORG_SYNC_MAX_DELETES",
        default_value_t = 10
    )]
    pub zitadel_org_sync_max_deletes: usize,

    /// Place new organizations from their ZITADEL metadata: `tenancy.kind` (`agency`) and
    /// `tenancy.agency` (the agency's organization id, for a client). Only for instances where
    /// organization owners cannot write their organization's metadata (organizations made by
    /// the platform only): an owner who can would place its organization under any agency.
    #[arg(
        long,
        env = "TENANCY_ZITADEL_PLACEMENT_METADATA",
        default_value_t = false
    )]
    pub zitadel_placement_metadata: bool,

    /// Organizations that are never tenants, comma separated (the platform's own organization):
    /// their events and the sync leave them alone.
    #[arg(long, env = "TENANCY_ZITADEL_IGNORE_ORGS", value_delimiter = ',')]
    pub zitadel_ignore_orgs: Vec<String>,

    /// Signing keys of the ZITADEL Actions target(s) that post organization events, comma
    /// separated (several during a key rotation).
    #[arg(long, env = "TENANCY_ZITADEL_WEBHOOK_KEYS", hide_env_values = true)]
    pub zitadel_webhook_keys: Option<SecretString>,

    /// Log format: `json` for machines, `text` for people; `auto` picks text on a terminal.
    #[arg(long, env = "TENANCY_LOG_FORMAT", value_enum, default_value = "auto")]
    pub log_format: LogFormat,

    /// Largest request body accepted, in bytes. The default takes the largest body the API's
    /// schema allows even with every character JSON-escaped (a 16 KiB CA or setting value as
    /// `\uXXXX` is 96 KiB), so a body that breaks the schema is answered 422, not 413.
    #[arg(long, env = "TENANCY_MAX_BODY", default_value_t = 128 * 1024)]
    pub max_body: usize,

    /// Open connections at most; more are closed as soon as they are accepted.
    #[arg(long, env = "TENANCY_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Requests handled at once (change-feed long polls aside); more are answered 503
    /// `overloaded` at once.
    #[arg(long, env = "TENANCY_MAX_IN_FLIGHT", default_value_t = 256)]
    pub max_in_flight: usize,

    /// How long a client may take to send a request's headers.
    #[arg(long, env = "TENANCY_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: std::time::Duration,

    /// How often the registry's gauges (tenants by status, operations by kind and state) are
    /// read from the registry database; scrapes of /metrics never query it.
    #[arg(long, env = "TENANCY_METRICS_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub metrics_interval: std::time::Duration,

    /// How long a request may take in all; must exceed --max-wait.
    #[arg(long, env = "TENANCY_REQUEST_TIMEOUT", default_value = "90s", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,

    /// The longest `wait` a request may ask for (change-feed long polls, waiting for a new
    /// tenant); longer ones are shortened. Keep it under the idle timeout of any proxy in front.
    #[arg(long, env = "TENANCY_MAX_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_wait: std::time::Duration,

    /// Serve HTTPS with this certificate chain (PEM); requires --tls-key-file. Plain HTTP when
    /// unset: terminate TLS in front of the registry then.
    #[arg(long, env = "TENANCY_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,

    /// The private key of --tls-cert-file (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TENANCY_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

impl Settings {
    /// The server's limits.
    pub fn limits(&self) -> crate::serve::Limits {
        crate::serve::Limits {
            max_connections: self.max_connections.max(1),
            max_in_flight: self.max_in_flight.max(1),
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
        }
    }

    /// Organizations that are never tenants: the ignore list and the platform's own.
    pub fn ignored_orgs(&self) -> std::collections::BTreeSet<String> {
        self.zitadel_ignore_orgs
            .iter()
            .map(|o| o.trim().to_owned())
            .chain(self.zitadel_platform_org_id.iter().map(ToString::to_string))
            .filter(|o| !o.is_empty())
            .collect()
    }

    /// Defaults for embedding the service (tests, tools): no configuration file, no
    /// authentication yet, text logs, 64 KiB bodies.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            config: None,
            listen,
            dev_token: None,
            zitadel_issuer: None,
            zitadel_project_id: None,
            zitadel_platform_org_id: None,
            zitadel_client_id: None,
            zitadel_client_secret: None,
            zitadel_application_key_file: None,
            zitadel_service_account_pat: None,
            zitadel_service_account_key_file: None,
            zitadel_list_paging: ListPaging::Query,
            zitadel_org_sync_interval: std::time::Duration::from_secs(300),
            zitadel_org_sync_max_deletes: 10,
            zitadel_placement_metadata: false,
            zitadel_ignore_orgs: Vec::new(),
            zitadel_webhook_keys: None,
            log_format: LogFormat::Text,
            max_body: 128 * 1024,
            max_connections: 1024,
            max_in_flight: 256,
            metrics_interval: std::time::Duration::from_secs(15),
            header_read_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(90),
            max_wait: std::time::Duration::from_secs(60),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListPaging {
    Query,
    Pagination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}
