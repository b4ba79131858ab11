//! Console sessions: a random id in an `HttpOnly` cookie, its SHA-256 in the registry database
//! (any replica serves any session), the verified caller stored at sign-in.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tenancy_core::OrgId;
use tenancy_zitadel::Caller;

use super::view;
use crate::auth::Authenticated;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "tenancy_console";

/// A new random id: two version-4 UUIDs' bytes (244 random bits, from the OS's generator).
pub fn new_id() -> String {
    URL_SAFE_NO_PAD.encode(rand_bytes())
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(16) {
        chunk.copy_from_slice(&uuid::Uuid::new_v4().into_bytes());
    }
    bytes
}

pub fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax`, `Secure` when the console is served over
/// TLS; `max_age` 0 removes it.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

pub fn caller_to_json(caller: &Caller) -> Value {
    json!({
        "subject": caller.subject,
        "org_id": caller.org_id,
        "roles": caller.roles,
    })
}

fn caller_from_json(value: &Value) -> Option<Caller> {
    let roles: BTreeMap<String, BTreeSet<OrgId>> =
        serde_json::from_value(value["roles"].clone()).ok()?;
    Some(Caller {
        subject: value["subject"].as_str()?.to_owned(),
        org_id: serde_json::from_value(value["org_id"].clone()).ok()?,
        roles,
    })
}

/// The signed-in person of a console request. A page without one sends the browser to the
/// sign-in page; an action without one is refused.
pub struct SignedIn {
    pub auth: Authenticated,
    pub id_hash: [u8; 32],
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let signed_out = || {
            if parts.method == Method::GET {
                let back = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/console");
                let to = format!("/console/signin?next={}", urlencode(back));
                Redirect::to(&to).into_response()
            } else {
                view::refusal(
                    403,
                    "Your session has ended. Sign in again, then repeat the action.",
                )
            }
        };
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(signed_out());
        };
        let id_hash = hash(id);
        let session = match state.engine.console_session(&id_hash).await {
            Ok(Some(session)) => session,
            Ok(None) => return Err(signed_out()),
            Err(e) => return Err(view::error(crate::error::ApiError::from(e))),
        };
        let Some(caller) = caller_from_json(&session.caller) else {
            return Err(signed_out());
        };
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(SignedIn {
            auth: Authenticated { caller, request_id },
            id_hash,
        })
    }
}

pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
