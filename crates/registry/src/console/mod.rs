//! The admin console under `/console`, served by the registry on its own listener:
//! server-rendered HTML (askama templates compiled into the binary), no JavaScript at all, so
//! nothing to build at install time, pages that work with scripts off, and a
//! Content-Security-Policy that allows no script. An operation under way is followed by the
//! page reloading itself (`<meta http-equiv="refresh">`).
//!
//! Every state-changing request is a POST whose `Origin` (or `Sec-Fetch-Site`) must be this
//! console's (403 otherwise); sessions are server-side (see `session`); sign-in is ZITADEL's
//! authorization code flow with PKCE (see `signin`).

mod actions;
mod charts;
mod fleet;
mod pages;
mod session;
mod signin;
mod view;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

const STYLE: &str = include_str!("../../templates/console/console.css");

pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/console", get(fleet::overview))
        .route("/console/console.css", get(style))
        .route("/console/servers", get(fleet::servers))
        .route(
            "/console/servers/{id}/{action}",
            post(actions::server_action),
        )
        .route("/console/operations", get(fleet::operations))
        .route("/console/migrations", get(fleet::migrations))
        .route("/console/audit", get(pages::audit))
        .route("/console/tenants", get(pages::tenants))
        .route("/console/tenants.csv", get(pages::tenants_csv))
        .route("/console/tenants/{org_id}", get(pages::tenant))
        .route(
            "/console/tenants/{org_id}/{action}",
            post(actions::tenant_action),
        )
        .route("/console/signin", get(signin::page))
        .route("/console/signin/zitadel", get(signin::start))
        .route("/console/signin/dev", post(signin::dev))
        .route("/console/callback", get(signin::callback))
        .route("/console/signout", post(signin::signout))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// Refuses a cross-site state-changing request, and sets the console's security headers.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let headers = request.headers();
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        // Either says where the request comes from; neither may name another site. (A page
        // whose referrer policy hides it makes browsers send `Origin: null`.)
        let site_ok = site.map(|s| s == "same-origin");
        let origin_ok = origin
            .filter(|o| *o != "null")
            .map(|o| o == state.console.origin);
        let allowed = match (site_ok, origin_ok) {
            (Some(false), _) | (_, Some(false)) => false,
            (Some(true), _) | (_, Some(true)) => true,
            (None, None) => false,
        };
        if !allowed {
            return view::refusal(
                403,
                "This request did not come from the console's own pages.",
            );
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set =
        |headers: &mut axum::http::HeaderMap, name: header::HeaderName, value: &'static str| {
            headers.insert(name, HeaderValue::from_static(value));
        };
    headers.insert(header::CONTENT_SECURITY_POLICY, state.console.csp.clone());
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}
