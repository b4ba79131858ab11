//! Command line and environment: every flag has an `env` twin.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use secrecy::SecretString;
use tenancy_core::OrgId;

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

    #[command(flatten)]
    pub zitadel: ZitadelArgs,

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

/// ZITADEL: tokens, the management API, organization events and sync. Each flag is
/// `--zitadel-…` with its `TENANCY_ZITADEL_…` twin.
#[derive(Debug, Clone, clap::Args)]
pub struct ZitadelArgs {
    /// ZITADEL instance URL (the token issuer, compared exactly). Enables ZITADEL tokens.
    #[arg(long = "zitadel-issuer", env = "TENANCY_ZITADEL_ISSUER")]
    pub issuer: Option<String>,

    /// The ZITADEL project whose id must be in a token's audience and whose roles count.
    #[arg(long = "zitadel-project-id", env = "TENANCY_ZITADEL_PROJECT_ID")]
    pub project_id: Option<String>,

    /// The platform's own organization: `platform_admin` and `tenant_router` count only when
    /// granted there. Required with TENANCY_ZITADEL_ISSUER; never onboarded as a tenant.
    #[arg(
        long = "zitadel-platform-org-id",
        env = "TENANCY_ZITADEL_PLATFORM_ORG_ID"
    )]
    pub platform_org_id: Option<OrgId>,

    /// Client id of the registry's API application, for introspecting opaque tokens.
    #[arg(long = "zitadel-client-id", env = "TENANCY_ZITADEL_CLIENT_ID")]
    pub client_id: Option<String>,

    /// Client secret of that application.
    #[arg(
        long = "zitadel-client-secret",
        env = "TENANCY_ZITADEL_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<SecretString>,

    /// Instead of a client secret: the API application's key file (JSON, from ZITADEL's
    /// console), for private-key JWT introspection.
    #[arg(
        long = "zitadel-application-key-file",
        env = "TENANCY_ZITADEL_APPLICATION_KEY_FILE",
        conflicts_with = "client_secret"
    )]
    pub application_key_file: Option<PathBuf>,

    /// Personal access token of the service account that calls ZITADEL's management API
    /// (admin invitations, organization creation and sync).
    #[arg(
        long = "zitadel-service-account-pat",
        env = "TENANCY_ZITADEL_SERVICE_ACCOUNT_PAT",
        hide_env_values = true
    )]
    pub service_account_pat: Option<SecretString>,

    /// Instead of a PAT: the service account's key file (JSON), for the JWT profile grant.
    #[arg(
        long = "zitadel-service-account-key-file",
        env = "TENANCY_ZITADEL_SERVICE_ACCOUNT_KEY_FILE",
        conflicts_with = "service_account_pat"
    )]
    pub service_account_key_file: Option<PathBuf>,

    /// How list calls page on your ZITADEL version: `query` or `pagination`.
    #[arg(
        long = "zitadel-list-paging",
        env = "TENANCY_ZITADEL_LIST_PAGING",
        value_enum,
        default_value = "query"
    )]
    pub list_paging: ListPaging,

    /// How often the organization sync compares ZITADEL's organizations with the tenants and
    /// converges (the safety net for missed events); `0s` turns it off. Needs a service account.
    #[arg(long = "zitadel-org-sync-interval", env = "TENANCY_ZITADEL_ORG_SYNC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub org_sync_interval: std::time::Duration,

    /// The most tenants one sync run may delete (organizations gone from ZITADEL). More is taken
    /// for a misconfiguration (a wrong instance): the run deletes none and logs an error.
    #[arg(
        long = "zitadel-org-sync-max-deletes",
        env = "TENANCY_ZITADEL_ORG_SYNC_MAX_DELETES",
        default_value_t = 10
    )]
    pub org_sync_max_deletes: usize,

    /// Place new organizations from their ZITADEL metadata: `tenancy.kind` (`agency`) and
    /// `tenancy.agency` (the agency's organization id, for a client). Only for instances where
    /// organization owners cannot write their organization's metadata (organizations made by
    /// the platform only): an owner who can would place its organization under any agency.
    #[arg(
        long = "zitadel-placement-metadata",
        env = "TENANCY_ZITADEL_PLACEMENT_METADATA",
        default_value_t = false
    )]
    pub placement_metadata: bool,

    /// Which new ZITADEL organizations the events and the sync onboard: `all`; `marked`, only
    /// those whose metadata `tenancy.onboard` is `true` (written by whoever approves them; the
    /// organization's own owners must not be able to write it); or `none` (onboarding only
    /// through `POST /v1/tenants`). Renames, deactivations and removals of tenants follow
    /// ZITADEL whatever this says.
    #[arg(
        long = "zitadel-auto-onboard",
        env = "TENANCY_ZITADEL_AUTO_ONBOARD",
        value_enum,
        default_value_t = AutoOnboard::All
    )]
    pub auto_onboard: AutoOnboard,

    /// Organizations that are never tenants, comma separated (the platform's own organization):
    /// their events and the sync leave them alone.
    #[arg(
        long = "zitadel-ignore-orgs",
        env = "TENANCY_ZITADEL_IGNORE_ORGS",
        value_delimiter = ','
    )]
    pub ignore_orgs: Vec<OrgId>,

    /// Signing keys of the ZITADEL Actions target(s) that post organization events, comma
    /// separated (several during a key rotation).
    #[arg(
        long = "zitadel-webhook-keys",
        env = "TENANCY_ZITADEL_WEBHOOK_KEYS",
        hide_env_values = true
    )]
    pub webhook_keys: Option<SecretString>,
}

/// What the server holds itself to (see `serve`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Requests handled at once, long polls of the change feed aside; more are answered
    /// 503 `overloaded` at once.
    pub max_in_flight: usize,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// How long a request may take in all (longer than the longest `wait` a route allows).
    pub request_timeout: Duration,
}

impl Settings {
    /// The server's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections.max(1),
            max_in_flight: self.max_in_flight.max(1),
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
        }
    }

    /// Organizations that are never tenants: the ignore list and the platform's own.
    pub fn ignored_orgs(&self) -> BTreeSet<OrgId> {
        self.zitadel
            .ignore_orgs
            .iter()
            .cloned()
            .chain(self.zitadel.platform_org_id.iter().cloned())
            .collect()
    }

    /// The defaults of every flag, listening on `listen`: no configuration file, no
    /// authentication yet, text logs. For embedding the service (tests, tools); the
    /// environment's `TENANCY_*` variables apply, as they do to the binary.
    pub fn new(listen: SocketAddr) -> Self {
        let mut settings = Self::try_parse_from(["tenancy-registry", "--log-format", "text"])
            .expect("the defaults parse");
        settings.listen = listen;
        settings
    }

    /// The checks that need more than one flag: refused at start-up, before anything runs.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.request_timeout <= self.max_wait {
            bail!(
                "TENANCY_REQUEST_TIMEOUT ({:?}) must be longer than TENANCY_MAX_WAIT ({:?}), or \
                 every long wait would time out",
                self.request_timeout,
                self.max_wait
            );
        }
        if self.dev_token.is_some() {
            if !self.listen.ip().is_loopback() {
                bail!(
                    "the development token is only allowed on a loopback listen address, not {}",
                    self.listen
                );
            }
            if self.zitadel.issuer.is_some() {
                bail!(
                    "the development token is refused when ZITADEL tokens are on \
                     (TENANCY_ZITADEL_ISSUER): unset TENANCY_DEV_TOKEN"
                );
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            bail!("TENANCY_TLS_CERT_FILE and TENANCY_TLS_KEY_FILE go together");
        }
        Ok(())
    }
}

/// Which new organizations are onboarded without a request (see `--zitadel-auto-onboard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AutoOnboard {
    All,
    Marked,
    None,
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
