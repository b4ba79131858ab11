//! A small product service, as a team adopting the control plane would write it: ZITADEL
//! verifies the caller ([`CallerLayer`]), the router hands out a connection to the caller's own
//! tenant database ([`TenantConnection`]), and handlers run plain SQL on the template's schema.

use std::sync::Arc;

use axum::extract::Json;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use tenancy_router::TenantRouter;
use tenancy_router::extract::TenantConnection;
use tenancy_zitadel::{Caller, CallerLayer, Verifier};

/// The service's routes. Every request needs a ZITADEL token; every query runs in the caller's
/// organization's database, as that tenant's role.
pub fn app(router: TenantRouter, verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/tickets", get(list_tickets).post(open_ticket))
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
    let rows = db
        .query(
            "SELECT t.id, c.name, t.title, t.state::text FROM tickets t JOIN clients c ON c.id = t.client_id ORDER BY t.id",
            &[],
        )
        .await
        .map_err(internal)?;
    Ok(Json(
        rows.iter()
            .map(|r| Ticket {
                id: r.get(0),
                client: r.get(1),
                title: r.get(2),
                state: r.get(3),
            })
            .collect(),
    ))
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

async fn whoami(Extension(caller): Extension<Caller>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"subject": caller.subject, "org_id": caller.org_id}))
}
