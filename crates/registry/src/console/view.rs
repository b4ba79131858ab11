//! The console's pages as askama templates (`crates/registry/templates/console/`), and the
//! answers every handler shares: a page, a refusal, an error.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use tenancy_control::AuditEvent;
use tenancy_core::{Backup, Operation, OperationState, QuotaStatus, Server, Tenant, TenantMove};

use crate::error::ApiError;

/// Renders a page (a template that cannot render is a bug: 500, logged).
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A page that says why not, with its status.
pub fn refusal(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let page = Message {
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        message: message.to_owned(),
    };
    (status, render(&page)).into_response()
}

/// An API error as a page: the same status and words the API would answer (server errors
/// logged and not detailed).
pub fn error(e: ApiError) -> Response {
    let code = e.code();
    if code.is_server_error() {
        tracing::error!(error = %e, %code, "console request failed");
        return refusal(
            code.status(),
            "Something went wrong on our side; try again.",
        );
    }
    refusal(code.status(), &e.to_string())
}

/// Who is signed in, for every page's header.
pub struct Who {
    pub subject: String,
    pub platform_admin: bool,
}

#[derive(Template)]
#[template(path = "console/message.html")]
pub struct Message {
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "console/signin.html")]
pub struct SignIn {
    pub zitadel: bool,
    pub dev_token: bool,
    pub next: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
pub struct Overview {
    pub who: Who,
    pub total: i64,
    pub by_status: Vec<(String, i64)>,
    pub by_tier: Vec<(String, i64)>,
    pub by_kind: Vec<(String, i64)>,
    pub servers: Vec<Server>,
    /// The newest failed operations.
    pub failed: Vec<Operation>,
    /// Operations under way tried more than once.
    pub retrying: Vec<Operation>,
    /// (organization, warning level in percent, read-only)
    pub near_quota: Vec<(String, i16, bool)>,
    pub moves: Vec<TenantMove>,
    /// (organization, tier, newest backup): `None` when no tier schedules backups.
    pub past_backup: Option<Vec<(String, String, String)>>,
}

#[derive(Template)]
#[template(path = "console/operations.html")]
pub struct Operations {
    pub who: Who,
    pub operations: Vec<Operation>,
    pub states: Vec<&'static str>,
    pub kinds: Vec<&'static str>,
    pub state: String,
    pub kind: String,
    pub retried: bool,
    /// The query string of the next (older) page, when there is one.
    pub next: Option<String>,
    /// One of them is under way: the page reloads itself.
    pub following: bool,
}

/// A server's tenants by the schema version the registry recorded.
pub struct ServerVersions {
    pub id: String,
    pub template: Option<i32>,
    /// (version, tenants, behind the template)
    pub versions: Vec<(String, i64, bool)>,
    pub behind: i64,
}

#[derive(Template)]
#[template(path = "console/migrations.html")]
pub struct Migrations {
    pub who: Who,
    pub servers: Vec<ServerVersions>,
    pub failures: Vec<Tenant>,
    /// Tenants whose schema is behind or differs, when asked for.
    pub drift: Option<Vec<tenancy_control::fleet::TenantSchemaStatus>>,
}

#[derive(Template)]
#[template(path = "console/mine.html")]
pub struct Mine {
    pub who: Who,
    pub orgs: Vec<String>,
}

/// The tenants list's filter, as the form shows it.
#[derive(Default)]
pub struct Filter {
    pub status: String,
    pub tier: String,
    pub kind: String,
    pub server: String,
    pub region: String,
    pub agency: String,
    /// The search text: an organization id, a database name or a part of a name.
    pub q: String,
}

/// The values the tenants list's filters offer.
pub struct Choices {
    pub statuses: Vec<String>,
    pub tiers: Vec<String>,
    pub kinds: Vec<String>,
    pub servers: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/tenants.html")]
pub struct Tenants {
    pub who: Who,
    pub tenants: Vec<Tenant>,
    pub filter: Filter,
    pub choices: Choices,
    /// The query string of the next page, when there is one.
    pub next: Option<String>,
    pub csv: String,
}

/// An action a tenant's page offers: its path segment, label, and whether the organization id
/// must be typed to confirm it.
pub struct Action {
    pub name: &'static str,
    pub label: &'static str,
    pub confirm: bool,
}

#[derive(Template)]
#[template(path = "console/tenant.html")]
pub struct TenantPage {
    pub who: Who,
    pub tenant: Tenant,
    pub operations: Vec<Operation>,
    pub audit: Vec<AuditEvent>,
    pub actions: Vec<Action>,
    /// An operation under way: the page reloads itself until it ends.
    pub following: bool,
    pub usage: Option<Usage>,
    pub quotas: Vec<QuotaStatus>,
    /// (key, value as shown): a secret a tenant admin may not read shows as set.
    pub settings: Vec<(String, String)>,
    pub features: Vec<String>,
    pub clients: Vec<Tenant>,
    /// Newest first; for those who may see them (platform and the tenant's admins).
    pub backups: Vec<Backup>,
    /// The tiers a platform admin may re-tier to (empty for others).
    pub tiers: Vec<String>,
    /// The tenant's moves, newest first (platform admins).
    pub moves: Vec<TenantMove>,
    /// A move under way (platform admins may cancel it before its switch).
    pub moving: bool,
    /// The servers a platform admin may move the tenant to: active, in its region.
    pub targets: Vec<String>,
    /// The point-in-time restore window (earliest, latest), when its server's WAL is archived
    /// (for those who may restore).
    pub window: Option<(String, String)>,
}

impl TenantPage {
    /// The backups a restore may start from.
    pub fn restorable(&self) -> Vec<&Backup> {
        self.backups
            .iter()
            .filter(|b| b.state == tenancy_core::BackupState::Completed)
            .collect()
    }

    /// Whether the signed-in person may restore (they may back up: the tenant's admins).
    pub fn may_restore(&self) -> bool {
        self.actions.iter().any(|a| a.name == "backup")
    }
}

/// A tenant's usage as the page shows it; the charts are SVG made from numbers only.
pub struct Usage {
    pub size: String,
    pub connections: i64,
    pub connection_limit: i32,
    pub quota: Option<String>,
    pub percent: Option<String>,
    pub gauge: Option<String>,
    pub chart: Option<String>,
}

#[derive(Template)]
#[template(path = "console/servers.html")]
pub struct Servers {
    pub who: Who,
    pub servers: Vec<Server>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct Audit {
    pub who: Who,
    pub events: Vec<AuditEvent>,
    pub org: String,
    pub action: String,
    pub actor: String,
    /// The query string of the next (older) page, when there is one.
    pub next: Option<String>,
}

pub fn running(operation: &Operation) -> bool {
    matches!(
        operation.state,
        OperationState::Queued | OperationState::Running
    )
}
