//! The console's fleet pages, for platform admins: the overview, the servers, operations across
//! tenants, and schema versions with their drift. Each reads through the engine calls the API
//! and `tenantctl` use.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use tenancy_control::fleet::SchemaDrift;
use tenancy_control::{ControlError, OperationFilter};
use tenancy_core::{OperationKind, OperationState};
use uuid::Uuid;

use super::pages::{PAGE, mine, who};
use super::session::SignedIn;
use super::view::{self, ServerVersions};
use crate::error::ApiError;
use crate::state::AppState;

/// How many rows each list of the overview shows (each links to the whole list).
const GLANCE: i64 = 10;

/// `GET /console`: the fleet at a glance (platform admins); a tenant admin's tenants otherwise.
pub async fn overview(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    if !signed_in.auth.caller.is_platform_admin() {
        return mine(signed_in);
    }
    let engine = &state.engine;
    let recent = |states: Vec<OperationState>, retried| OperationFilter {
        states,
        retried,
        limit: GLANCE,
        ..OperationFilter::default()
    };
    let loaded = async {
        Ok::<_, ControlError>((
            engine.tenant_counts().await?,
            engine.servers().await?,
            engine
                .operations(&recent(vec![OperationState::Failed], false))
                .await?,
            engine
                .operations(&recent(
                    vec![OperationState::Queued, OperationState::Running],
                    true,
                ))
                .await?,
            engine.tenants_near_quota(GLANCE).await?,
            engine.moves_in_flight(GLANCE).await?,
            engine.tenants_past_backup(GLANCE).await?,
        ))
    }
    .await;
    let (counts, servers, failed, retrying, near_quota, moves, past_backup) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return view::error(e.into()),
    };
    let mut by_status = BTreeMap::new();
    let mut by_tier = BTreeMap::new();
    let mut by_kind = BTreeMap::new();
    for (status, tier, kind, n) in &counts {
        *by_status.entry(status.to_string()).or_insert(0) += n;
        *by_tier.entry(tier.to_string()).or_insert(0) += n;
        *by_kind.entry(kind.to_string()).or_insert(0) += n;
    }
    let scheduled = engine.config().tiers.values().any(|t| t.backups.is_some());
    view::render(&view::Overview {
        who: who(&signed_in),
        total: counts.iter().map(|(.., n)| n).sum(),
        by_status: by_status.into_iter().collect(),
        by_tier: by_tier.into_iter().collect(),
        by_kind: by_kind.into_iter().collect(),
        servers,
        failed,
        retrying,
        near_quota: near_quota
            .into_iter()
            .map(|(org, level, read_only)| (org.to_string(), level, read_only))
            .collect(),
        moves,
        past_backup: scheduled.then(|| {
            past_backup
                .into_iter()
                .map(|(org, tier, last)| {
                    let last = last.map_or_else(
                        || "never".to_owned(),
                        |at| at.format("%Y-%m-%d %H:%M").to_string(),
                    );
                    (org.to_string(), tier.to_string(), last)
                })
                .collect()
        }),
    })
}

/// `GET /console/servers`: every database server (platform admins).
pub async fn servers(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    if let Err(e) = signed_in.auth.require_platform_admin() {
        return view::error(e);
    }
    match state.engine.servers().await {
        Ok(servers) => view::render(&view::Servers {
            who: who(&signed_in),
            servers,
        }),
        Err(e) => view::error(e.into()),
    }
}

/// The operations page's query.
#[derive(Debug, Default, Deserialize)]
pub struct OperationsQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    kind: String,
    /// Only operations tried more than once.
    #[serde(default)]
    retried: Option<String>,
    /// The last operation of the previous page.
    before: Option<Uuid>,
}

impl OperationsQuery {
    fn filter(&self) -> Result<OperationFilter, ApiError> {
        let state = match self.state.trim() {
            "" => None,
            text => Some(
                text.parse::<OperationState>()
                    .map_err(|e| ApiError::invalid(format!("state: {text:?} is not one ({e})")))?,
            ),
        };
        let kind = match self.kind.trim() {
            "" => None,
            text => Some(
                text.parse::<OperationKind>()
                    .map_err(|e| ApiError::invalid(format!("kind: {text:?} is not one ({e})")))?,
            ),
        };
        Ok(OperationFilter {
            states: state.into_iter().collect(),
            kind,
            retried: self.retried.is_some(),
            before: self.before,
            limit: PAGE + 1,
        })
    }

    fn query_string(&self, before: Option<Uuid>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [("state", &self.state), ("kind", &self.kind)] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        if self.retried.is_some() {
            query.append_pair("retried", "1");
        }
        if let Some(before) = before {
            query.append_pair("before", &before.to_string());
        }
        query.finish()
    }
}

/// `GET /console/operations`: operations across tenants, newest first, 50 a page (platform
/// admins).
pub async fn operations(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<OperationsQuery>,
) -> Response {
    if let Err(e) = signed_in.auth.require_platform_admin() {
        return view::error(e);
    }
    let filter = match query.filter() {
        Ok(filter) => filter,
        Err(e) => return view::error(e),
    };
    let mut operations = match state.engine.operations(&filter).await {
        Ok(operations) => operations,
        Err(e) => return view::error(e.into()),
    };
    let next = (operations.len() as i64 > PAGE).then(|| {
        operations.truncate(PAGE as usize);
        query.query_string(operations.last().map(|o| o.id))
    });
    let following = operations.iter().any(view::running);
    view::render(&view::Operations {
        who: who(&signed_in),
        operations,
        states: OperationState::ALL.iter().map(|s| s.as_str()).collect(),
        kinds: OperationKind::ALL.iter().map(|k| k.as_str()).collect(),
        state: query.state.clone(),
        kind: query.kind.clone(),
        retried: query.retried.is_some(),
        next,
        following,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct MigrationsQuery {
    /// Compare every tenant's schema with its server's template (connects to each database).
    #[serde(default)]
    drift: Option<String>,
}

/// `GET /console/migrations`: schema versions per server as the registry recorded them, failed
/// migrations, and on demand the drift of every tenant's schema (platform admins).
pub async fn migrations(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<MigrationsQuery>,
) -> Response {
    if let Err(e) = signed_in.auth.require_platform_admin() {
        return view::error(e);
    }
    let engine = &state.engine;
    let loaded = async {
        let servers = engine.servers().await?;
        let versions = engine.schema_versions().await?;
        let failures = engine.migration_failures(PAGE).await?;
        let drift = match query.drift {
            Some(_) => Some(
                engine
                    .fleet_status()
                    .await?
                    .into_iter()
                    .filter(|t| t.drift != SchemaDrift::None)
                    .collect(),
            ),
            None => None,
        };
        Ok::<_, ControlError>((servers, versions, failures, drift))
    }
    .await;
    let (servers, versions, failures, drift) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return view::error(e.into()),
    };
    let servers = servers
        .into_iter()
        .map(|server| {
            let template = server.template_version;
            let versions: Vec<(String, i64, bool)> = versions
                .iter()
                .filter(|(id, ..)| *id == server.id)
                .map(|(_, version, n)| {
                    let behind = match (version, template) {
                        (Some(v), Some(t)) => *v < t,
                        (None, _) => true,
                        (Some(_), None) => false,
                    };
                    let shown = version.map_or_else(|| "none".to_owned(), |v| v.to_string());
                    (shown, *n, behind)
                })
                .collect();
            ServerVersions {
                id: server.id.to_string(),
                template,
                behind: versions.iter().filter(|v| v.2).map(|v| v.1).sum(),
                versions,
            }
        })
        .collect();
    view::render(&view::Migrations {
        who: who(&signed_in),
        servers,
        failures,
        drift,
    })
}
