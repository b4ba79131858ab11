//! Signing in and out. With ZITADEL: the authorization code flow with PKCE (S256), `state` and
//! `nonce` (openidconnect, over an HTTP client that never follows redirects); the access token
//! it yields is verified exactly as the API verifies bearer tokens, so roles are read the same
//! way. Without ZITADEL (the `make run` default): the development token, typed in, on a
//! loopback listener only (the registry refuses the token anywhere else).

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use openidconnect::core::{CoreAuthenticationFlow, CoreIdToken};
use openidconnect::{
    AuthorizationCode, ClientId, CsrfToken, LogoutRequest, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;

use super::session::{self, SESSION_COOKIE, SignedIn};
use super::view;
use crate::state::AppState;

/// The pending sign-in's `state`, PKCE verifier and nonce, in a short-lived cookie the
/// callback reads (any replica can serve the callback).
const LOGIN_COOKIE: &str = "tenancy_console_login";
const LOGIN_MAX_AGE: u64 = 600;

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a path of the console, never another site.
fn next_path(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or("/console")
        .to_owned()
}

/// `GET /console/signin`: how to sign in here.
pub async fn page(State(state): State<AppState>, Query(next): Query<Next>) -> Response {
    let next = next_path(next.next.as_deref());
    view::render(&view::SignIn {
        zitadel: state.console.oidc.is_some(),
        dev_token: state.console.dev_sign_in,
        next,
    })
}

/// `GET /console/signin/zitadel`: off to ZITADEL's authorization endpoint.
pub async fn start(State(state): State<AppState>, Query(next): Query<Next>) -> Response {
    let Some(oidc) = &state.console.oidc else {
        return view::refusal(404, "Sign-in through ZITADEL is not configured.");
    };
    let client = match oidc.client(false).await {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "ZITADEL discovery failed");
            return view::refusal(503, "ZITADEL cannot be reached; try again shortly.");
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new(format!(
            "urn:zitadel:iam:org:project:id:{}:aud",
            state.console.project_id
        )))
        .add_scope(Scope::new("urn:zitadel:iam:org:projects:roles".into()))
        .set_pkce_challenge(challenge)
        .url();
    let pending = [
        csrf.secret().as_str(),
        verifier.secret().as_str(),
        nonce.secret().as_str(),
        &session::urlencode(&next_path(next.next.as_deref())),
    ]
    .join(".");
    let cookie = session::set_cookie(
        LOGIN_COOKIE,
        &pending,
        "/console/callback",
        LOGIN_MAX_AGE,
        state.console.secure,
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(url.as_str())).into_response()
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /console/callback`: the code exchanged (with the PKCE verifier), the ID token checked
/// (signature, issuer, audience, nonce), the access token verified as the API would; then a
/// new session.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let clear_login = session::set_cookie(
        LOGIN_COOKIE,
        "",
        "/console/callback",
        0,
        state.console.secure,
    );
    let refuse = |status: u16, message: &str| {
        let mut response = view::refusal(status, message);
        if let Ok(value) = clear_login.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        response
    };
    let Some(oidc) = &state.console.oidc else {
        return refuse(404, "Sign-in through ZITADEL is not configured.");
    };
    if let Some(error) = &answer.error {
        tracing::info!(error, "ZITADEL refused the sign-in");
        return refuse(403, "ZITADEL did not sign you in.");
    }
    let pending = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    // The next page comes last: it may hold dots; the three values before it never do.
    let parts: Vec<&str> = pending.splitn(4, '.').collect();
    let [csrf, verifier, nonce, next] = parts[..] else {
        return refuse(
            400,
            "This sign-in has expired or was started elsewhere. Start again.",
        );
    };
    let (Some(code), Some(returned)) = (&answer.code, &answer.state) else {
        return refuse(400, "The answer from ZITADEL is incomplete.");
    };
    if returned != csrf {
        return refuse(
            400,
            "This sign-in has expired or was started elsewhere. Start again.",
        );
    }
    let client = match oidc.client(false).await {
        Ok(client) => client,
        Err(_) => return refuse(503, "ZITADEL cannot be reached; try again shortly."),
    };
    let exchanged = match client.exchange_code(AuthorizationCode::new(code.clone())) {
        Ok(request) => {
            request
                .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
                .request_async(&oidc.http)
                .await
        }
        Err(e) => return refuse(503, &format!("ZITADEL names no token endpoint: {e}")),
    };
    let tokens = match exchanged {
        Ok(tokens) => tokens,
        Err(e) => {
            tracing::info!(error = %e, "code exchange refused");
            return refuse(403, "ZITADEL did not confirm the sign-in. Start again.");
        }
    };
    let Some(id_token) = tokens.id_token() else {
        return refuse(403, "ZITADEL sent no ID token.");
    };
    let nonce = Nonce::new(nonce.to_owned());
    if let Err(first) = id_token.claims(&client.id_token_verifier(), &nonce) {
        // Perhaps signed with a key published since the keys were fetched: once more, fresh.
        let fresh = oidc.client(true).await;
        let verified = fresh
            .as_ref()
            .map(|fresh| id_token.claims(&fresh.id_token_verifier(), &nonce).is_ok())
            .unwrap_or(false);
        if !verified {
            tracing::info!(error = %first, "ID token refused");
            return refuse(403, "ZITADEL's ID token does not check out. Start again.");
        }
    }
    let caller = match crate::auth::authenticate_token(
        &state.authenticators,
        tokens.access_token().secret(),
    )
    .await
    {
        Ok(caller) => caller,
        Err(crate::auth::AuthError::Unavailable) => {
            return refuse(503, "ZITADEL cannot be reached; try again shortly.");
        }
        Err(crate::auth::AuthError::Refused) => {
            return refuse(403, "ZITADEL's access token is not one for this registry.");
        }
    };
    let next = url::form_urlencoded::parse(format!("n={next}").as_bytes())
        .next()
        .map(|(_, v)| next_path(Some(&v)))
        .unwrap_or_else(|| "/console".into());
    let mut response = start_session(&state, &caller, Some(&id_token.to_string()), &next).await;
    if let Ok(value) = clear_login.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A new session (a new id at every sign-in), and on to `next`.
async fn start_session(
    state: &AppState,
    caller: &tenancy_zitadel::Caller,
    id_token: Option<&str>,
    next: &str,
) -> Response {
    let id = session::new_id();
    if let Err(e) = state
        .engine
        .start_console_session(
            &session::hash(&id),
            &session::caller_to_json(caller),
            id_token,
        )
        .await
    {
        return view::error(e.into());
    }
    let max_age = state.engine.config().console.session_lifetime.as_secs();
    let cookie = session::set_cookie(
        SESSION_COOKIE,
        &id,
        "/console",
        max_age,
        state.console.secure,
    );
    tracing::info!(subject = caller.subject, "signed in to the console");
    ([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response()
}

#[derive(Deserialize)]
pub struct DevSignIn {
    token: String,
    next: Option<String>,
}

/// `POST /console/signin/dev`: the development token, checked as the API checks it.
pub async fn dev(State(state): State<AppState>, Form(form): Form<DevSignIn>) -> Response {
    if !state.console.dev_sign_in {
        return view::refusal(404, "Sign-in with the development token is not available.");
    }
    match crate::auth::authenticate_token(&state.authenticators, form.token.trim()).await {
        Ok(caller) => start_session(&state, &caller, None, &next_path(form.next.as_deref())).await,
        Err(_) => view::refusal(403, "That is not the development token."),
    }
}

/// `POST /console/signout`: the session ends here, then at ZITADEL (its end-session endpoint,
/// with the ID token as the hint) when it began there.
pub async fn signout(State(state): State<AppState>, signed_in: SignedIn) -> Response {
    let ended = state.engine.end_console_session(&signed_in.id_hash).await;
    let cookie = session::set_cookie(SESSION_COOKIE, "", "/console", 0, state.console.secure);
    let mut to = "/console/signin".to_owned();
    if let (Ok(Some(Some(id_token))), Some(oidc)) = (ended, &state.console.oidc)
        && let Ok(metadata) = oidc.metadata(false).await
        && let Some(end_session) = metadata.additional_metadata().end_session_endpoint.clone()
        && let Ok(hint) = id_token.parse::<CoreIdToken>()
        && let Ok(redirect) = PostLogoutRedirectUrl::new(oidc.post_logout_uri.clone())
    {
        to = LogoutRequest::from(end_session)
            .set_id_token_hint(&hint)
            .set_post_logout_redirect_uri(redirect)
            .set_client_id(ClientId::new(oidc.client_id.clone()))
            .http_get_url()
            .to_string();
    }
    tracing::info!(
        subject = signed_in.auth.caller.subject,
        "signed out of the console"
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&to)).into_response()
}
