//! A small product service, as a team adopting the control plane would write it: ZITADEL
//! verifies the caller ([`CallerLayer`]), the router hands out a connection to the tenant the
//! request acts in ([`TenantConnection`]), and handlers run plain SQL on the template's schema.
//!
//! Agencies: an agency's user may act in one of its clients by sending `X-Tenant-Id: <client>`
//! (checked against the registry, see [`CurrentTenant`]), and `GET /agency/tickets` lists the
//! tickets of every active client of the caller's agency.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Json, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tenancy_router::extract::{CurrentTenant, TenantConnection};
use tenancy_router::{TenantClient, TenantRouter};
use tenancy_zitadel::{CallerLayer, Verifier};

/// The service's routes. Every request needs a ZITADEL token; every query runs in the caller's
/// organization's database, as that tenant's role.
pub fn app(router: TenantRouter, verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/tickets", get(list_tickets).post(open_ticket))
        .route("/agency/tickets", get(agency_tickets))
        .route("/whoami", get(whoami))
        .layer(CallerLayer::new(verifier))
        .with_state(router)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Ticket {
    pub id: i64,
    pub client: String,
    pub title: String,
    pub state: String,
}

#[derive(Debug, Deserialize)]
pub struct NewTicket {
    pub client: String,
    pub title: String,
}

type ApiResult<T> = Result<T, (StatusCode, String)>;

fn internal(e: tokio_postgres::Error) -> (StatusCode, String) {
    tracing::error!(error = %e, "query failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "query failed".into())
}

async fn list_tickets(TenantConnection(db): TenantConnection) -> ApiResult<Json<Vec<Ticket>>> {
    Ok(Json(tickets_in(&db).await?))
}

/// Every ticket of the tenant `db` is connected to.
async fn tickets_in(db: &TenantClient) -> ApiResult<Vec<Ticket>> {
    let rows = db
        .query(
            "SELECT t.id, c.name, t.title, t.state::text FROM tickets t JOIN clients c ON c.id = t.client_id ORDER BY t.id",
            &[],
        )
        .await
        .map_err(internal)?;
    Ok(rows
        .iter()
        .map(|r| Ticket {
            id: r.get(0),
            client: r.get(1),
            title: r.get(2),
            state: r.get(3),
        })
        .collect())
}

async fn open_ticket(
    TenantConnection(db): TenantConnection,
    Json(new): Json<NewTicket>,
) -> ApiResult<(StatusCode, Json<Ticket>)> {
    if new.client.trim().is_empty() || new.title.trim().is_empty() {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "client and title are required".into(),
        ));
    }
    let row = db
        .query_one(
            "WITH c AS (
                 INSERT INTO clients (name) VALUES ($1)
                 ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id, name)
             INSERT INTO tickets (client_id, title) SELECT id, $2 FROM c
             RETURNING id, (SELECT name FROM c), title, state::text",
            &[&new.client, &new.title],
        )
        .await
        .map_err(internal)?;
    Ok((
        StatusCode::CREATED,
        Json(Ticket {
            id: row.get(0),
            client: row.get(1),
            title: row.get(2),
            state: row.get(3),
        }),
    ))
}

/// A ticket of one of an agency's clients.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClientTicket {
    /// The client tenant (organization) it belongs to.
    pub org_id: String,
    #[serde(flatten)]
    pub ticket: Ticket,
}

/// Who may see every client's tickets at once: the same roles that act in one client.
const AGENCY_VIEW_ROLES: &[&str] = &["tenant_user", "tenant_admin"];

/// The agency view: every active client's tickets, each from that client's own database. Only
/// an agency's callers holding a role there (a context in one's own organization checks none);
/// the registry says which tenants are its clients.
async fn agency_tickets(
    State(router): State<TenantRouter>,
    CurrentTenant(tenant): CurrentTenant,
) -> ApiResult<Json<Vec<ClientTicket>>> {
    if tenant.kind != tenancy_core::TenantKind::Agency || tenant.via_agency.is_some() {
        return Err((
            StatusCode::FORBIDDEN,
            "the agency view is for an agency's own users".into(),
        ));
    }
    tenant
        .require_role(AGENCY_VIEW_ROLES)
        .map_err(|e| (StatusCode::FORBIDDEN, e.to_string()))?;
    let clients = router.clients(&tenant.org_id).await.map_err(unavailable)?;
    let mut all = Vec::new();
    for client in clients
        .iter()
        .filter(|c| c.status == tenancy_core::TenantStatus::Active)
    {
        let db = router.get(&client.org_id).await.map_err(unavailable)?;
        all.extend(
            tickets_in(&db)
                .await?
                .into_iter()
                .map(|ticket| ClientTicket {
                    org_id: client.org_id.to_string(),
                    ticket,
                }),
        );
    }
    Ok(Json(all))
}

fn unavailable(e: tenancy_router::RouterError) -> (StatusCode, String) {
    tracing::warn!(error = %e, "a client's database is unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "a client's database is unavailable".into(),
    )
}

async fn whoami(CurrentTenant(tenant): CurrentTenant) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "org_id": tenant.org_id,
        "kind": tenant.kind,
        "parent_org_id": tenant.parent_org_id,
        "roles": tenant.roles,
        "via_agency": tenant.via_agency,
    }))
}
