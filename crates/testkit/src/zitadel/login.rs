//! Browser sign-in as ZITADEL does it: the authorization code flow with PKCE (S256 only, as
//! for ZITADEL's "PKCE" web applications, which have no secret), a login page standing in for
//! ZITADEL's login (a form of login name and password), ID tokens carrying the request's
//! `nonce`, and the end-session endpoint. Redirect URIs must be registered exactly.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Shared, State_, TokenClaims, ZitadelStandIn, project_mut, refuse};

/// How long a code may wait for its exchange (ZITADEL: short-lived, single use).
const CODE_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct Logins {
    apps: Vec<WebApp>,
    people: Vec<Person>,
    /// Authorization requests waiting for the person to sign in, by id.
    pending: HashMap<String, AuthRequest>,
    /// Codes issued, by code.
    codes: HashMap<String, Issued>,
    /// Subjects whose ZITADEL session ended through the end-session endpoint.
    pub(super) ended: Vec<String>,
}

struct WebApp {
    client_id: String,
    redirect_uris: Vec<String>,
    post_logout_uris: Vec<String>,
}

struct Person {
    login_name: String,
    password: String,
    claims: TokenClaims,
}

#[derive(Clone)]
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    challenge: String,
}

struct Issued {
    request: AuthRequest,
    claims: TokenClaims,
    at: Instant,
}

impl ZitadelStandIn {
    /// Registers a web application (PKCE, no secret) with its redirect URIs.
    pub fn register_web_app(&self, client_id: &str, redirect_uri: &str, post_logout_uri: &str) {
        let mut state = self.state.lock().unwrap();
        state.login.apps.push(WebApp {
            client_id: client_id.into(),
            redirect_uris: vec![redirect_uri.into()],
            post_logout_uris: vec![post_logout_uri.into()],
        });
    }

    /// A person who can sign in on the login page, and what their tokens say.
    pub fn add_person(&self, login_name: &str, password: &str, claims: TokenClaims) {
        let mut state = self.state.lock().unwrap();
        state.login.people.push(Person {
            login_name: login_name.into(),
            password: password.into(),
            claims,
        });
    }

    /// Whether `subject`'s ZITADEL session was ended through the end-session endpoint.
    pub fn signed_out(&self, subject: &str) -> bool {
        let state = self.state.lock().unwrap();
        state.login.ended.iter().any(|s| s == subject)
    }
}

/// The OIDC configuration of a web application as ZITADEL checks it: code flow, redirect URIs
/// (plain `http` ones only in development mode), a known app type and auth method.
fn web_app_config(body: &Value) -> Result<(Vec<String>, Vec<String>), super::Refusal> {
    let invalid = (
        StatusCode::BAD_REQUEST,
        3,
        "Errors.Project.App.OIDCConfigInvalid",
    );
    let strings = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let (redirects, post_logout) = (strings("redirectUris"), strings("postLogoutRedirectUris"));
    let dev_mode = body["devMode"] == json!(true);
    let fine = !redirects.is_empty()
        && strings("responseTypes").contains(&"OIDC_RESPONSE_TYPE_CODE".to_owned())
        && strings("grantTypes").contains(&"OIDC_GRANT_TYPE_AUTHORIZATION_CODE".to_owned())
        && matches!(
            body["appType"].as_str(),
            Some("OIDC_APP_TYPE_WEB" | "OIDC_APP_TYPE_USER_AGENT" | "OIDC_APP_TYPE_NATIVE")
        )
        && matches!(
            body["authMethodType"].as_str(),
            Some(
                "OIDC_AUTH_METHOD_TYPE_NONE"
                    | "OIDC_AUTH_METHOD_TYPE_BASIC"
                    | "OIDC_AUTH_METHOD_TYPE_POST"
                    | "OIDC_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT"
            )
        )
        && redirects
            .iter()
            .chain(&post_logout)
            .all(|u| u.starts_with("https://") || (dev_mode && u.starts_with("http://")));
    if fine {
        Ok((redirects, post_logout))
    } else {
        Err(invalid)
    }
}

/// `POST /management/v1/projects/{id}/apps/oidc`.
pub(super) async fn create_web_app(
    State(state): Shared,
    axum::extract::Path(project_id): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (redirects, post_logout) = match web_app_config(&body) {
        Ok(uris) => uris,
        Err(refused) => return refuse(refused),
    };
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return refuse((StatusCode::BAD_REQUEST, 3, "Errors.Project.App.Invalid"));
    };
    let mut state = state.lock().unwrap();
    let app_id = state.new_id();
    let project = match project_mut(&mut state, &headers, &project_id) {
        Ok(project) => project,
        Err(refused) => return refuse(refused),
    };
    if project
        .web_apps
        .iter()
        .chain(&project.apps)
        .any(|(_, n, _)| n == name)
    {
        return refuse((StatusCode::CONFLICT, 6, "Errors.Project.App.AlreadyExists"));
    }
    let client_id = format!("{app_id}@{}", project.name);
    project
        .web_apps
        .push((app_id.clone(), name.into(), client_id.clone()));
    state.login.apps.push(WebApp {
        client_id: client_id.clone(),
        redirect_uris: redirects,
        post_logout_uris: post_logout,
    });
    Json(json!({"appId": app_id, "clientId": client_id, "details": {"sequence": "10"}}))
        .into_response()
}

/// `PUT /management/v1/projects/{id}/apps/{appId}/oidc_config`.
pub(super) async fn update_web_app(
    State(state): Shared,
    axum::extract::Path((project_id, app_id)): axum::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (redirects, post_logout) = match web_app_config(&body) {
        Ok(uris) => uris,
        Err(refused) => return refuse(refused),
    };
    let mut state = state.lock().unwrap();
    let project = match project_mut(&mut state, &headers, &project_id) {
        Ok(project) => project,
        Err(refused) => return refuse(refused),
    };
    let Some((_, _, client_id)) = project
        .web_apps
        .iter()
        .find(|(id, _, _)| *id == app_id)
        .cloned()
    else {
        return refuse((StatusCode::NOT_FOUND, 5, "Errors.Project.App.NotFound"));
    };
    let Some(app) = state
        .login
        .apps
        .iter_mut()
        .find(|a| a.client_id == client_id)
    else {
        return refuse((StatusCode::NOT_FOUND, 5, "Errors.Project.App.NotFound"));
    };
    if app.redirect_uris == redirects && app.post_logout_uris == post_logout {
        return refuse((StatusCode::PRECONDITION_FAILED, 9, "Errors.NoChangesFound"));
    }
    app.redirect_uris = redirects;
    app.post_logout_uris = post_logout;
    Json(json!({"details": {"sequence": "11"}})).into_response()
}

/// An OAuth error sent back to the client's redirect URI, or (when the redirect URI itself is
/// not to be trusted) shown on the page, as ZITADEL does.
fn page_error(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Html(format!("<p>{message}</p>"))).into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_owned())]).into_response()
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{query}")
}

/// `GET /oauth/v2/authorize`: checks the request, then shows the login page.
pub(super) async fn authorize(
    State(state): Shared,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut state = state.lock().unwrap();
    let get = |key: &str| query.get(key).map(String::as_str);
    let Some(app) =
        get("client_id").and_then(|id| state.login.apps.iter().find(|a| a.client_id == id))
    else {
        return page_error("Errors.App.NotFound");
    };
    let Some(redirect_uri) =
        get("redirect_uri").filter(|r| app.redirect_uris.iter().any(|u| u == r))
    else {
        return page_error("Errors.OIDC.RedirectURIInvalid");
    };
    let client_id = app.client_id.clone();
    let refuse = |error: &str| {
        let mut pairs = vec![("error", error)];
        if let Some(state) = get("state") {
            pairs.push(("state", state));
        }
        redirect(&with_query(redirect_uri, &pairs))
    };
    if get("response_type") != Some("code") {
        return refuse("unsupported_response_type");
    }
    if !get("scope").is_some_and(|s| s.split(' ').any(|s| s == "openid")) {
        return refuse("invalid_scope");
    }
    // A web application without a secret must use PKCE, with S256.
    let (Some(challenge), Some("S256")) = (get("code_challenge"), get("code_challenge_method"))
    else {
        return refuse("invalid_request");
    };
    let id = state.new_id();
    state.login.pending.insert(
        id.clone(),
        AuthRequest {
            client_id,
            redirect_uri: redirect_uri.to_owned(),
            state: get("state").map(str::to_owned),
            nonce: get("nonce").map(str::to_owned),
            challenge: challenge.to_owned(),
        },
    );
    Html(format!(
        "<!doctype html><title>Sign in</title>\
         <form method=\"post\" action=\"/ui/v2/login/login\">\
         <input type=\"hidden\" name=\"authRequest\" value=\"{id}\">\
         <label>Login name <input name=\"loginName\" id=\"loginName\"></label>\
         <label>Password <input name=\"password\" id=\"password\" type=\"password\"></label>\
         <button type=\"submit\" id=\"submit\">Sign in</button></form>"
    ))
    .into_response()
}

/// `POST /ui/v2/login/login`: the login page's form; back to the application with a code.
pub(super) async fn sign_in(
    State(state): Shared,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = state.lock().unwrap();
    let get = |key: &str| form.get(key).map(String::as_str).unwrap_or_default();
    let Some(person) = state
        .login
        .people
        .iter()
        .find(|p| p.login_name == get("loginName") && p.password == get("password"))
    else {
        return (
            StatusCode::UNAUTHORIZED,
            Html("<p>Errors.User.Password.Invalid</p>"),
        )
            .into_response();
    };
    let claims = person.claims.clone();
    let Some(request) = state.login.pending.remove(get("authRequest")) else {
        return page_error("Errors.AuthRequest.NotFound");
    };
    let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = request.state.as_deref() {
        pairs.push(("state", s));
    }
    let to = with_query(&request.redirect_uri, &pairs);
    state.login.codes.insert(
        code.clone(),
        Issued {
            request,
            claims,
            at: Instant::now(),
        },
    );
    redirect(&to)
}

fn invalid_grant(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant", "error_description": description})),
    )
        .into_response()
}

/// The token endpoint's `authorization_code` grant: the code once, the same client and
/// redirect URI, and a `code_verifier` whose S256 is the request's challenge.
pub(super) fn exchange_code(state: &mut State_, form: &HashMap<String, String>) -> Response {
    let get = |key: &str| form.get(key).map(String::as_str).unwrap_or_default();
    let Some(issued) = state.login.codes.remove(get("code")) else {
        return invalid_grant("code invalid or used");
    };
    if issued.at.elapsed() > CODE_LIFETIME {
        return invalid_grant("code expired");
    }
    let request = &issued.request;
    if get("client_id") != request.client_id || get("redirect_uri") != request.redirect_uri {
        return invalid_grant("client or redirect_uri does not match the request");
    }
    let verifier = get("code_verifier");
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if verifier.len() < 43 || digest != request.challenge {
        return invalid_grant("code_verifier does not match the challenge");
    }
    let mut claims = issued.claims.clone();
    if !claims.audience.contains(&request.client_id) {
        claims.audience.push(request.client_id.clone());
    }
    let access_token = state.sign(&ZitadelStandIn::payload(state, &claims));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut id_claims = json!({
        "iss": state.issuer, "sub": claims.subject, "aud": [request.client_id],
        "azp": request.client_id, "iat": now, "exp": now + 3600, "auth_time": now,
        "urn:zitadel:iam:user:resourceowner:id": claims.org_id,
    });
    if let Some(nonce) = &request.nonce {
        id_claims["nonce"] = json!(nonce);
    }
    let id_token = state.sign(&id_claims);
    Json(json!({
        "access_token": access_token, "token_type": "Bearer",
        "expires_in": claims.expires_in, "id_token": id_token,
    }))
    .into_response()
}

/// The subject of an ID token this instance signed (with any key it publishes; an expired
/// token is still a valid hint).
fn signed_subject(state: &State_, token: &str) -> Option<String> {
    let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
    let key = state.keys.iter().find(|k| k.kid == kid)?;
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        key.jwk["n"].as_str()?,
        key.jwk["e"].as_str()?,
    )
    .ok()?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.set_issuer(&[&state.issuer]);
    let data = jsonwebtoken::decode::<Value>(token, &decoding, &validation).ok()?;
    Some(data.claims["sub"].as_str()?.to_owned())
}

/// `GET /oidc/v1/end_session`: ends the session the ID token names, then back to a registered
/// post-logout URI.
pub(super) async fn end_session(
    State(state): Shared,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut state = state.lock().unwrap();
    let subject = query
        .get("id_token_hint")
        .and_then(|hint| signed_subject(&state, hint));
    let Some(subject) = subject else {
        return page_error("Errors.OIDC.IDTokenHintInvalid");
    };
    state.login.ended.push(subject);
    match query.get("post_logout_redirect_uri") {
        Some(uri)
            if state
                .login
                .apps
                .iter()
                .any(|a| a.post_logout_uris.contains(uri)) =>
        {
            redirect(uri)
        }
        Some(_) => page_error("Errors.OIDC.PostLogoutRedirectURIInvalid"),
        None => Html("<p>Signed out</p>").into_response(),
    }
}
