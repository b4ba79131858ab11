//! The console's tenant pages: the tenants list (and its CSV), one tenant, and the audit log.
//! Each reads through the same engine calls, with the same authorization, as the API.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tenancy_control::{AuditFilter, TenantFilter};
use tenancy_core::{OrgId, TenantSelector};
use tenancy_zitadel::roles;

use super::session::SignedIn;
use super::view::{self, Action, Filter, Who};
use crate::error::ApiError;
use crate::state::AppState;

pub(super) fn who(signed_in: &SignedIn) -> Who {
    Who {
        subject: signed_in.auth.caller.subject.clone(),
        platform_admin: signed_in.auth.caller.is_platform_admin(),
    }
}

/// A tenant admin's organizations: what the console shows people who are not platform admins.
pub(super) fn mine(signed_in: SignedIn) -> Response {
    let orgs = signed_in
        .auth
        .caller
        .roles
        .get(roles::TENANT_ADMIN)
        .map(|orgs| orgs.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    view::render(&view::Mine {
        who: who(&signed_in),
        orgs,
    })
}

/// The tenants list's query: the API's filters, by their console names.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Organization id, database name, or a part of the name.
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    tier: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    server: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    agency: String,
    #[serde(default)]
    cursor: String,
}

pub(super) const PAGE: i64 = 50;

impl ListQuery {
    /// The engine's filter; a value that is not a valid one is a 400 naming it.
    fn filter(&self, limit: i64) -> Result<TenantFilter, ApiError> {
        fn parse<T: std::str::FromStr>(name: &str, text: &str) -> Result<Option<T>, ApiError> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| ApiError::invalid(format!("{name}: {text:?} is not a valid one")))
        }
        Ok(TenantFilter {
            selector: TenantSelector {
                statuses: parse("status", &self.status)?.into_iter().collect(),
                region: parse("region", &self.region)?,
                tier: parse("tier", &self.tier)?,
                server_id: parse("server", &self.server)?,
                kind: parse("kind", &self.kind)?,
                parent_org_id: parse("agency", &self.agency)?,
                org_ids: Vec::new(),
            },
            search: crate::routes::filter_text("search", non_empty(&self.q))?,
            after: parse("cursor", &self.cursor)?,
            limit,
        })
    }

    fn query_string(&self, cursor: Option<&str>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("q", &self.q),
            ("status", &self.status),
            ("tier", &self.tier),
            ("kind", &self.kind),
            ("server", &self.server),
            ("region", &self.region),
            ("agency", &self.agency),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", cursor);
        }
        query.finish()
    }
}

/// `GET /console/tenants`: search and filters, pages of 50 (platform admins).
pub async fn tenants(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> Response {
    if !signed_in.auth.caller.is_platform_admin() {
        return mine(signed_in);
    }
    let filter = match query.filter(PAGE + 1) {
        Ok(filter) => filter,
        Err(e) => return view::error(e),
    };
    let mut tenants = match state.engine.list_tenants(&filter).await {
        Ok(tenants) => tenants,
        Err(e) => return view::error(e.into()),
    };
    let servers = match state.engine.servers().await {
        Ok(servers) => servers.into_iter().map(|s| s.id.to_string()).collect(),
        Err(e) => return view::error(e.into()),
    };
    let next = (tenants.len() as i64 > PAGE).then(|| {
        tenants.truncate(PAGE as usize);
        let last = tenants.last().map(|t| t.org_id.to_string());
        query.query_string(last.as_deref())
    });
    view::render(&view::Tenants {
        who: who(&signed_in),
        tenants,
        csv: query.query_string(None),
        choices: view::Choices {
            statuses: tenancy_core::TenantStatus::ALL
                .iter()
                .map(|s| s.to_string())
                .collect(),
            tiers: state
                .engine
                .config()
                .tiers
                .keys()
                .map(|t| t.to_string())
                .collect(),
            kinds: tenancy_core::TenantKind::ALL
                .iter()
                .map(|k| k.to_string())
                .collect(),
            servers,
        },
        filter: Filter {
            status: query.status.clone(),
            tier: query.tier.clone(),
            kind: query.kind.clone(),
            server: query.server.clone(),
            region: query.region.clone(),
            agency: query.agency.clone(),
            q: query.q.clone(),
        },
        next,
    })
}

/// `GET /console/tenants.csv`: every tenant of the current filter (platform admins).
pub async fn tenants_csv(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<ListQuery>,
) -> Response {
    if let Err(e) = signed_in.auth.require_platform_admin() {
        return view::error(e);
    }
    let filter = match query.filter(i64::MAX) {
        Ok(filter) => filter,
        Err(e) => return view::error(e),
    };
    let tenants = match state.engine.all_tenants(&filter).await {
        Ok(tenants) => tenants,
        Err(e) => return view::error(e.into()),
    };
    let mut csv =
        String::from("org_id,name,status,tier,kind,server_id,region,db_name,created_at\n");
    for t in tenants {
        let fields = [
            t.org_id.to_string(),
            t.name.to_string(),
            t.status.to_string(),
            t.tier.to_string(),
            t.kind.to_string(),
            t.server_id.map(|s| s.to_string()).unwrap_or_default(),
            t.region.to_string(),
            t.db_name.to_string(),
            t.created_at.to_rfc3339(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"tenants.csv\"",
            ),
        ],
        csv,
    )
        .into_response()
}

/// RFC 4180 quoting; a field a spreadsheet would run as a formula is prefixed with `'`.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// `GET /console/tenants/{org_id}`: one tenant, for whoever may read it through the API.
pub async fn tenant(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(org_id): Path<String>,
) -> Response {
    let Ok(org_id) = org_id.parse::<OrgId>() else {
        return view::refusal(404, "There is no such tenant.");
    };
    let auth = &signed_in.auth;
    if let Err(e) = auth.require_tenant_or_agency(&state.engine, &org_id).await {
        return view::error(e);
    }
    let engine = &state.engine;
    let loaded = async {
        let tenant = engine.tenant(&org_id).await?;
        let operations = engine.tenant_operations(&org_id, 20).await?;
        let audit = engine.tenant_audit_events(&org_id, 20).await?;
        Ok::<_, tenancy_control::ControlError>((tenant, operations, audit))
    }
    .await;
    let (tenant, operations, audit) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return view::error(e.into()),
    };
    let platform = auth.caller.is_platform_admin();
    let agency = !platform
        && auth
            .require_platform_or_agency_admin(engine, &org_id)
            .await
            .is_ok();
    let may_suspend = platform || agency;
    let may_back_up = auth.require_tenant_admin(&org_id).is_ok();
    // (path, label, organization id typed to confirm, who may)
    let actions = [
        ("suspend", "Suspend", true, may_suspend),
        ("resume", "Resume", false, may_suspend),
        ("backup", "Back up now", false, may_back_up),
        ("retry", "Retry the failed operation", false, platform),
        ("rotate-credentials", "Rotate credentials", true, platform),
        ("delete", "Delete", true, platform),
    ]
    .into_iter()
    .filter(|(_, _, _, may)| *may)
    .map(|(name, label, confirm, _)| Action {
        name,
        label,
        confirm,
    })
    .collect();
    let following = operations.first().is_some_and(view::running);
    let moving = operations
        .iter()
        .any(|o| o.kind == tenancy_core::OperationKind::Move && view::running(o));
    let targets = if platform {
        match engine.servers().await {
            Ok(servers) => servers
                .into_iter()
                .filter(|s| {
                    s.state == tenancy_core::ServerState::Active
                        && s.region == tenant.region
                        && Some(&s.id) != tenant.server_id.as_ref()
                })
                .map(|s| s.id.to_string())
                .collect(),
            Err(e) => return view::error(e.into()),
        }
    } else {
        Vec::new()
    };
    let window = if may_back_up {
        match engine.restore_window(&org_id).await {
            Ok(window) => window.earliest.map(|earliest| {
                let latest = window
                    .latest
                    .map_or_else(|| "now (once archived)".to_owned(), |l| l.to_rfc3339());
                (earliest.to_rfc3339(), latest)
            }),
            Err(e) => return view::error(e.into()),
        }
    } else {
        None
    };
    let tiers = if platform {
        engine
            .config()
            .tiers
            .keys()
            .map(|t| t.to_string())
            .collect()
    } else {
        Vec::new()
    };
    let moves = if platform {
        match engine.tenant_moves(&org_id, 10).await {
            Ok(moves) => moves,
            Err(e) => return view::error(e.into()),
        }
    } else {
        Vec::new()
    };
    let details = details(&state, auth, &tenant).await;
    let (usage, quotas, settings, features, clients, backups) = match details {
        Ok(details) => details,
        Err(e) => return view::error(e),
    };
    view::render(&view::TenantPage {
        who: who(&signed_in),
        tenant: auth.tenant(tenant),
        operations,
        audit: if platform { audit } else { Vec::new() },
        actions,
        following,
        usage,
        quotas,
        settings,
        features,
        clients,
        backups,
        tiers,
        moves,
        moving,
        targets,
        window,
    })
}

type Details = (
    Option<view::Usage>,
    Vec<tenancy_core::QuotaStatus>,
    Vec<(String, String)>,
    Vec<String>,
    Vec<tenancy_core::Tenant>,
    Vec<tenancy_core::Backup>,
);

/// The rest of a tenant's page, each part under the API's rule for it.
async fn details(
    state: &AppState,
    auth: &crate::auth::Authenticated,
    tenant: &tenancy_core::Tenant,
) -> Result<Details, ApiError> {
    let engine = &state.engine;
    let org_id = &tenant.org_id;
    let usage = match engine.usage(org_id, None).await {
        Ok(usage) => Some(view::Usage {
            size: bytesize::ByteSize::b(usage.size_bytes.max(0) as u64).to_string(),
            connections: usage.connections,
            connection_limit: usage.connection_limit,
            quota: usage
                .storage_quota_bytes
                .map(|q| bytesize::ByteSize::b(q.max(0) as u64).to_string()),
            percent: usage.storage_used_percent.map(|p| format!("{p:.1}")),
            gauge: usage.storage_used_percent.map(super::charts::gauge),
            chart: super::charts::storage(&usage.history, usage.storage_quota_bytes),
        }),
        // Not placed yet (or not any more): no database to measure.
        Err(tenancy_control::ControlError::Conflict {
            code: tenancy_core::ErrorCode::NotPlaced,
            ..
        }) => None,
        Err(e) => return Err(e.into()),
    };
    let quotas = engine.quotas(org_id).await?;
    let secrets = if auth.caller.can_route() {
        tenancy_control::Secrets::Reveal
    } else {
        tenancy_control::Secrets::Redact
    };
    let settings = if auth.caller.can_read_tenant(org_id) || auth.caller.can_route() {
        engine
            .settings(org_id, secrets)
            .await?
            .into_iter()
            .map(|s| {
                let shown = s
                    .value
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "(secret, set)".to_owned());
                (s.key.to_string(), shown)
            })
            .collect()
    } else {
        Vec::new()
    };
    let features = engine
        .features(org_id)
        .await?
        .enabled
        .into_iter()
        .map(|f| f.to_string())
        .collect();
    let clients = if tenant.kind == tenancy_core::TenantKind::Agency {
        let filter = TenantFilter {
            selector: TenantSelector {
                parent_org_id: Some(org_id.clone()),
                ..Default::default()
            },
            search: None,
            after: None,
            limit: 100,
        };
        engine.list_tenants(&filter).await?
    } else {
        Vec::new()
    };
    let backups = if auth.require_tenant_admin(org_id).is_ok() {
        engine.backups(org_id, None, 10).await?
    } else {
        Vec::new()
    };
    Ok((usage, quotas, settings, features, clients, backups))
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    org: String,
    /// Actions starting with this.
    #[serde(default)]
    action: String,
    /// One actor's events (its subject).
    #[serde(default)]
    actor: String,
    before: Option<i64>,
}

/// A form field as a filter: `None` when left empty.
fn non_empty(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty())
}

/// `GET /console/audit`: who did what, newest first, by organization, action and actor
/// (platform admins), 50 a page.
pub async fn audit(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<AuditQuery>,
) -> Response {
    if let Err(e) = signed_in.auth.require_platform_admin() {
        return view::error(e);
    }
    let filter = async {
        Ok::<_, ApiError>(AuditFilter {
            org_id: non_empty(&query.org)
                .map(|org| {
                    org.parse::<OrgId>().map_err(|_| {
                        ApiError::invalid(format!("{org:?} is not an organization id"))
                    })
                })
                .transpose()?,
            action: crate::routes::filter_text("action", non_empty(&query.action))?,
            actor: crate::routes::filter_text("actor", non_empty(&query.actor))?,
            before_id: query.before,
            limit: PAGE + 1,
        })
    }
    .await;
    let filter = match filter {
        Ok(filter) => filter,
        Err(e) => return view::error(e),
    };
    let mut events = match state.engine.audit_events(&filter).await {
        Ok(events) => events,
        Err(e) => return view::error(e.into()),
    };
    let next = (events.len() as i64 > PAGE).then(|| {
        events.truncate(PAGE as usize);
        let last = events.last().map(|e| e.id).unwrap_or_default();
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("org", &query.org),
            ("action", &query.action),
            ("actor", &query.actor),
        ] {
            if let Some(value) = non_empty(value) {
                next.append_pair(name, value);
            }
        }
        next.append_pair("before", &last.to_string());
        next.finish()
    });
    view::render(&view::Audit {
        who: who(&signed_in),
        events,
        org: query.org.trim().to_owned(),
        action: query.action.trim().to_owned(),
        actor: query.actor.trim().to_owned(),
        next,
    })
}
