//! The admin console over HTTP, as a browser drives it: sign-in through the stand-in's
//! authorization endpoint (PKCE, state, nonce), pages by role, actions with their confirmation
//! and the cross-site check, session expiry, sign-out at the registry and at ZITADEL.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::json;
use tenancy_registry::Settings;
use tenancy_testkit::{PLATFORM_ORG_ID, TokenClaims, ZitadelStandIn, eventually};
use tenancy_zitadel::roles;

use crate::common::{DEV_TOKEN, TestApp, dev_settings};

const CLIENT_ID: &str = "263014839178379300@tenancy";

/// A browser: its own cookies, redirects followed by hand (so each hop can be looked at), and
/// an `Origin` on every POST as browsers send it.
struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    origin: String,
}

/// A page as the browser got it.
struct Page {
    status: StatusCode,
    location: Option<String>,
    body: String,
    headers: reqwest::header::HeaderMap,
}

impl Browser {
    fn new(origin: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
            origin: origin.to_owned(),
        }
    }

    async fn send(&mut self, method: Method, url: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut request = self.http.request(method.clone(), url);
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header(COOKIE, cookies.join("; "));
        }
        if method == Method::POST {
            request = request.header(ORIGIN, &self.origin);
        }
        if let Some(form) = form {
            request = request.form(form);
        }
        let response = request.send().await.unwrap();
        for value in response.headers().get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, content) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), content.to_owned());
            }
        }
        Page {
            status: response.status(),
            location: response
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&mut self, url: &str) -> Page {
        self.send(Method::GET, url, None).await
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, url, Some(form)).await
    }

    /// Follows redirects from `page` (relative ones against `base`) until a page that is not
    /// one.
    async fn follow(&mut self, base: &str, mut page: Page) -> Page {
        for _ in 0..10 {
            let Some(location) = page.location.clone() else {
                return page;
            };
            let url = if location.starts_with('/') {
                format!("{base}{location}")
            } else {
                location
            };
            page = self.get(&url).await;
        }
        panic!("too many redirects");
    }
}

/// The value of the first `name="..." value="..."` hidden input of a form.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker).expect("the field") + marker.len();
    body[start..].split('"').next().unwrap().to_owned()
}

/// The registry with ZITADEL and the console's client; the stand-in knows its redirect URIs.
pub async fn with_zitadel(zitadel: &ZitadelStandIn, idle: Duration) -> TestApp {
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap());
    settings.zitadel.issuer = Some(zitadel.issuer.clone());
    settings.zitadel.project_id = Some(zitadel.project_id().into());
    settings.zitadel.platform_org_id = Some(PLATFORM_ORG_ID.parse().unwrap());
    settings.zitadel.service_account_pat = Some(SecretString::from(tenancy_testkit::ZITADEL_PAT));
    settings.zitadel.org_sync_interval = Duration::ZERO;
    let mut app = TestApp::start_with(settings, Vec::new(), |config| {
        config.console.client_id = Some(CLIENT_ID.into());
        config.console.idle_timeout = idle;
    })
    .await;
    app.admin = zitadel.jwt(&TokenClaims::platform("ops", roles::PLATFORM_ADMIN));
    zitadel.register_web_app(
        CLIENT_ID,
        &format!("{}/console/callback", app.base()),
        &format!("{}/console/signin", app.base()),
    );
    app
}

/// Signs `login` in from the console's front door to its first page.
async fn sign_in(app: &TestApp, browser: &mut Browser, login: &str) -> Page {
    let base = app.base();
    let front = browser.get(&format!("{base}/console")).await;
    assert_eq!(front.status, StatusCode::SEE_OTHER);
    let signin = browser.follow(base, front).await;
    assert!(
        signin.body.contains("/console/signin/zitadel"),
        "{}",
        signin.body
    );
    let start = browser
        .get(&format!("{base}/console/signin/zitadel?next=%2Fconsole"))
        .await;
    let authorize = start.location.clone().expect("off to ZITADEL");
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    assert!(authorize.contains("nonce=") && authorize.contains("state="));
    let login_page = browser.get(&authorize).await;
    assert_eq!(login_page.status, StatusCode::OK, "{}", login_page.body);
    let request = hidden(&login_page.body, "authRequest");
    let back = browser
        .post(
            &format!("{}/ui/v2/login/login", zitadel_origin(&authorize)),
            &[
                ("authRequest", &request),
                ("loginName", login),
                ("password", "secret"),
            ],
        )
        .await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.body);
    browser.follow(base, back).await
}

fn zitadel_origin(url: &str) -> String {
    let parsed = url::Url::parse(url).unwrap();
    parsed.origin().ascii_serialization()
}

pub async fn onboard(app: &TestApp, org: &str, name: &str) {
    let (status, body) = app
        .admin_call(
            Method::POST,
            "/v1/tenants?wait=30s",
            Some(json!({"org_id": org, "name": name})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_platform_admin_signs_in_through_zitadel_suspends_a_tenant_and_signs_out() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let app = with_zitadel(&zitadel, Duration::from_secs(600)).await;
    zitadel.add_person(
        "ada",
        "secret",
        TokenClaims::platform("263014839179200001", roles::PLATFORM_ADMIN),
    );
    onboard(&app, "263014839179300001", "Acme Corp").await;
    let base = app.base().to_owned();
    let mut browser = Browser::new(&base);

    let overview = sign_in(&app, &mut browser, "ada").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(
        overview.body.contains("Fleet") && overview.body.contains("pg-1"),
        "{}",
        overview.body
    );
    let cookie = overview.headers.get_all(SET_COOKIE).iter().count();
    assert_eq!(
        cookie, 0,
        "the session cookie came with the callback, not the page"
    );
    let csp = overview.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(!overview.body.contains("<script"), "no script at all");

    let list = browser
        .get(&format!("{base}/console/tenants?status=active"))
        .await;
    assert!(list.body.contains("263014839179300001") && list.body.contains("Acme Corp"));
    let csv = browser
        .get(&format!("{base}/console/tenants.csv?status=active"))
        .await;
    assert!(csv.body.starts_with("org_id,name,status"), "{}", csv.body);
    assert!(
        csv.body.contains("263014839179300001,Acme Corp,active"),
        "{}",
        csv.body
    );

    let page_url = format!("{base}/console/tenants/263014839179300001");
    let page = browser.get(&page_url).await;
    assert!(page.body.contains("id=\"action-suspend\""), "{}", page.body);
    // Its quotas (the tier's) and settings and features sections, as the API would show them.
    assert!(
        page.body.contains("<section id=\"quotas\">") && page.body.contains("api_calls"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<section id=\"settings\">"));
    // Re-tier from the page: the API sees the new tier.
    assert!(page.body.contains("id=\"action-retier\""));
    let retier = browser
        .post(&format!("{page_url}/retier"), &[("tier", "professional")])
        .await;
    assert_eq!(retier.status, StatusCode::SEE_OTHER, "{}", retier.body);
    let (_, tenant) = app
        .admin_call(Method::GET, "/v1/tenants/263014839179300001", None)
        .await;
    assert_eq!(tenant["tier"], "professional");
    // The re-tier's operation ends before the next action (one operation at a time).
    page_with(&browser, &page_url, "<td>retier</td>").await;
    let unknown = browser
        .post(&format!("{page_url}/retier"), &[("tier", "platinum")])
        .await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "as the API answers a tier that is not configured"
    );
    let servers = browser.get(&format!("{base}/console/servers")).await;
    assert!(
        servers.body.contains("pg-1") && servers.body.contains("1 / 1000"),
        "{}",
        servers.body
    );
    let suspend = format!("{page_url}/suspend");
    // Without the organization id typed in: refused, nothing done.
    let unconfirmed = browser.post(&suspend, &[("confirm", "")]).await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    // From another site (a form posted from elsewhere carries its own origin): refused.
    browser.origin = "https://evil.example".into();
    let forged = browser
        .post(&suspend, &[("confirm", "263014839179300001")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    browser.origin = base.clone();
    let (_, tenant) = app
        .admin_call(Method::GET, "/v1/tenants/263014839179300001", None)
        .await;
    assert_eq!(tenant["status"], "active", "nothing was done");

    let done = browser
        .post(&suspend, &[("confirm", "263014839179300001")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let following = browser.get(&page_url).await;
    assert!(
        following.body.contains("suspend") && following.body.contains("<table id=\"operations\">"),
        "{}",
        following.body
    );
    let finished = eventually(
        Duration::from_secs(30),
        "the page shows it suspended",
        || {
            let mut browser = Browser {
                http: browser.http.clone(),
                cookies: browser.cookies.clone(),
                origin: base.clone(),
            };
            let url = page_url.clone();
            async move {
                let page = browser.get(&url).await;
                (page
                    .body
                    .contains("id=\"status\" class=\"status suspended\"")
                    && !page.body.contains("http-equiv=\"refresh\""))
                .then_some(page.body)
            }
        },
    )
    .await;
    assert!(
        finished.contains("263014839179200001"),
        "the audit names the person: {finished}"
    );
    let (_, audit) = app
        .admin_call(Method::GET, "/v1/audit?org_id=263014839179300001", None)
        .await;
    let requested = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "tenant.suspend")
        .unwrap_or_else(|| panic!("{audit}"));
    assert_eq!(
        requested["actor_subject"], "263014839179200001",
        "the person who clicked, not the console: {requested}"
    );
    let log = browser
        .get(&format!("{base}/console/audit?org=263014839179300001"))
        .await;
    assert!(
        log.body.contains("tenant.suspend") && log.body.contains("263014839179200001"),
        "{}",
        log.body
    );
    // By action (a prefix) and by actor: the person's suspension, and not the tenant's
    // onboarding by the operator.
    let by = browser
        .get(&format!(
            "{base}/console/audit?action=tenant.sus&actor=263014839179200001"
        ))
        .await;
    assert!(by.body.contains("tenant.suspend"), "{}", by.body);
    assert!(!by.body.contains("tenant.create"), "{}", by.body);
    let (status, api) = app
        .admin_call(Method::GET, "/v1/audit?action=tenant.create", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        !actions.is_empty() && actions.iter().all(|a| a.starts_with("tenant.create")),
        "{actions:?}"
    );

    // Sign-out: the session ends here, the browser goes to ZITADEL's end-session endpoint.
    let session = browser.cookies["tenancy_console"].clone();
    let out = browser.post(&format!("{base}/console/signout"), &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let end_session = out.location.unwrap();
    assert!(
        end_session.contains("/oidc/v1/end_session?") && end_session.contains("id_token_hint=")
    );
    let back = browser.get(&end_session).await;
    assert_eq!(back.status, StatusCode::FOUND);
    assert!(zitadel.signed_out("263014839179200001"));
    // The old cookie, replayed, is no session.
    browser.cookies.insert("tenancy_console".into(), session);
    let replayed = browser.get(&format!("{base}/console")).await;
    assert_eq!(replayed.status, StatusCode::SEE_OTHER);
    assert!(replayed.location.unwrap().starts_with("/console/signin"));
}

#[tokio::test]
async fn a_tenant_admin_sees_its_own_tenant_only_and_may_not_suspend_it() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let app = with_zitadel(&zitadel, Duration::from_secs(600)).await;
    onboard(&app, "263014839179300011", "Mine").await;
    onboard(&app, "263014839179300012", "Theirs").await;
    zitadel.add_person(
        "jane",
        "secret",
        TokenClaims::new(
            "263014839179200011",
            "263014839179300011",
            roles::TENANT_ADMIN,
        ),
    );
    let base = app.base().to_owned();
    let mut browser = Browser::new(&base);
    let first = sign_in(&app, &mut browser, "jane").await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(
        first.body.contains("/console/tenants/263014839179300011"),
        "{}",
        first.body
    );
    assert!(!first.body.contains("263014839179300012"));
    let list = browser.get(&format!("{base}/console/tenants")).await;
    assert!(
        !list.body.contains("263014839179300012"),
        "no fleet list for a tenant admin"
    );

    let own = browser
        .get(&format!("{base}/console/tenants/263014839179300011"))
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.body.contains("Mine"), "{}", own.body);
    assert!(
        own.body.contains("id=\"action-backup\"")
            && !own.body.contains("id=\"action-suspend\"")
            && !own.body.contains("id=\"action-retier\""),
        "{}",
        own.body
    );
    let other = browser
        .get(&format!("{base}/console/tenants/263014839179300012"))
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    assert!(!other.body.contains("Theirs"));
    let suspend = browser
        .post(
            &format!("{base}/console/tenants/263014839179300011/suspend"),
            &[("confirm", "263014839179300011")],
        )
        .await;
    assert_eq!(suspend.status, StatusCode::FORBIDDEN);
    let retier = browser
        .post(
            &format!("{base}/console/tenants/263014839179300011/retier"),
            &[("tier", "enterprise")],
        )
        .await;
    assert_eq!(retier.status, StatusCode::FORBIDDEN);
    // A tenant admin backs up their own tenant (as the API lets them), and no other.
    let backup = browser
        .post(
            &format!("{base}/console/tenants/263014839179300011/backup"),
            &[],
        )
        .await;
    assert_eq!(backup.status, StatusCode::SEE_OTHER, "{}", backup.body);
    let (_, backups) = app
        .admin_call(Method::GET, "/v1/tenants/263014839179300011/backups", None)
        .await;
    assert_eq!(
        backups["backups"].as_array().map(Vec::len),
        Some(1),
        "{backups}"
    );
    let theirs = browser
        .post(
            &format!("{base}/console/tenants/263014839179300012/backup"),
            &[],
        )
        .await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    let csv = browser.get(&format!("{base}/console/tenants.csv")).await;
    assert_eq!(csv.status, StatusCode::FORBIDDEN);
    for page in ["servers", "audit", "operations", "migrations"] {
        let refused = browser.get(&format!("{base}/console/{page}")).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{page}");
    }
    let drain = browser
        .post(
            &format!("{base}/console/servers/pg-1/drain"),
            &[("confirm", "pg-1")],
        )
        .await;
    assert_eq!(drain.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sign_in_is_refused_without_its_pkce_state_and_an_idle_session_ends() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let app = with_zitadel(&zitadel, Duration::from_secs(2)).await;
    zitadel.add_person(
        "ada",
        "secret",
        TokenClaims::platform("263014839179200021", roles::PLATFORM_ADMIN),
    );
    let base = app.base().to_owned();

    // A callback this browser did not start (no pending sign-in, or another state): refused.
    let mut stranger = Browser::new(&base);
    let forged = stranger
        .get(&format!("{base}/console/callback?code=abc&state=xyz"))
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert!(!stranger.cookies.contains_key("tenancy_console"));

    let mut browser = Browser::new(&base);
    let start = browser.get(&format!("{base}/console/signin/zitadel")).await;
    let authorize = start.location.unwrap();
    let login = browser.get(&authorize).await;
    let back = browser
        .post(
            &format!("{}/ui/v2/login/login", zitadel_origin(&authorize)),
            &[
                ("authRequest", &hidden(&login.body, "authRequest")),
                ("loginName", "ada"),
                ("password", "secret"),
            ],
        )
        .await;
    let callback = back.location.unwrap();
    let tampered = callback.replace("state=", "state=x");
    let refused = browser.get(&tampered).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(!browser.cookies.contains_key("tenancy_console"));

    // A fresh, complete sign-in; then nothing for longer than the idle timeout.
    let mut browser = Browser::new(&base);
    let page = sign_in(&app, &mut browser, "ada").await;
    assert_eq!(page.status, StatusCode::OK);
    let session = &browser.cookies["tenancy_console"];
    assert!(session.len() >= 40);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = browser.get(&format!("{base}/console")).await;
    assert_eq!(idle.status, StatusCode::SEE_OTHER, "the idle session ended");
    let action = browser
        .post(
            &format!("{base}/console/tenants/263014839179300021/resume"),
            &[],
        )
        .await;
    assert_eq!(action.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn without_zitadel_the_development_token_signs_in_on_loopback() {
    let app = TestApp::start_with(dev_settings(), Vec::new(), |_| {}).await;
    let base = app.base().to_owned();
    let mut browser = Browser::new(&base);
    let signin = browser.get(&format!("{base}/console/signin")).await;
    assert!(
        signin.body.contains("/console/signin/dev")
            && !signin.body.contains("/console/signin/zitadel")
    );
    let wrong = browser
        .post(
            &format!("{base}/console/signin/dev"),
            &[("token", "not-the-token-at-all-0123456789abcdef")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let right = browser
        .post(
            &format!("{base}/console/signin/dev"),
            &[("token", DEV_TOKEN), ("next", "https://evil.example/")],
        )
        .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    assert_eq!(
        right.location.as_deref(),
        Some("/console"),
        "never sent off-site"
    );
    let set_cookie = right.headers[SET_COOKIE].to_str().unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let overview = browser.get(&format!("{base}/console")).await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(overview.body.contains("Fleet"));
    // A state-changing request with neither Origin nor Sec-Fetch-Site is refused.
    let cookie = format!("tenancy_console={}", browser.cookies["tenancy_console"]);
    let bare = reqwest::Client::new()
        .post(format!("{base}/console/signout"))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    // `Origin: null` (a page that hides its referrer) says nothing; another site's fetch
    // metadata refuses whatever the Origin.
    for (origin, site) in [("null", None), (base.as_str(), Some("cross-site"))] {
        let mut request = reqwest::Client::new()
            .post(format!("{base}/console/signout"))
            .header(
                COOKIE,
                format!("tenancy_console={}", browser.cookies["tenancy_console"]),
            )
            .header(ORIGIN, origin);
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::FORBIDDEN
        );
    }
    let still = browser.get(&format!("{base}/console")).await;
    assert_eq!(
        still.status,
        StatusCode::OK,
        "the session was not ended by the refused POSTs"
    );
}

#[tokio::test]
async fn a_registry_without_the_console_answers_its_paths_as_unknown_routes() {
    let app = TestApp::start_with(dev_settings(), Vec::new(), |config| {
        config.console.enabled = false;
    })
    .await;
    let mut browser = Browser::new(app.base());
    let page = browser.get(&format!("{}/console/signin", app.base())).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(page.headers["content-type"], "application/problem+json");
}

#[tokio::test]
async fn sign_in_follows_a_key_rotation_and_returns_to_the_page_asked_for() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let app = with_zitadel(&zitadel, Duration::from_secs(600)).await;
    zitadel.add_person(
        "ada",
        "secret",
        TokenClaims::platform("263014839179200041", roles::PLATFORM_ADMIN),
    );
    let base = app.base().to_owned();
    // A sign-in started makes the console fetch ZITADEL's metadata and keys, and keep them.
    let started = Browser::new(&base)
        .get(&format!("{base}/console/signin/zitadel"))
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    // ZITADEL signs with a new key from now on: the console's kept keys do not have it.
    zitadel.rotate_keys();
    let mut browser = Browser::new(&base);
    let start = browser
        .get(&format!(
            "{base}/console/signin/zitadel?next=%2Fconsole%2Ftenants.csv%3Fstatus%3Dactive"
        ))
        .await;
    let authorize = start.location.unwrap();
    let login = browser.get(&authorize).await;
    let back = browser
        .post(
            &format!("{}/ui/v2/login/login", zitadel_origin(&authorize)),
            &[
                ("authRequest", &hidden(&login.body, "authRequest")),
                ("loginName", "ada"),
                ("password", "secret"),
            ],
        )
        .await;
    let callback = browser.get(&back.location.unwrap()).await;
    assert_eq!(callback.status, StatusCode::SEE_OTHER, "{}", callback.body);
    assert_eq!(
        callback.location.as_deref(),
        Some("/console/tenants.csv?status=active")
    );
}

/// Signs in with the development token (a platform admin).
async fn sign_in_dev(base: &str) -> Browser {
    let mut browser = Browser::new(base);
    let signed_in = browser
        .post(
            &format!("{base}/console/signin/dev"),
            &[("token", DEV_TOKEN)],
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    browser
}

/// Waits until the page at `url` has `needle` (and is no longer following an operation).
async fn page_with(browser: &Browser, url: &str, needle: &str) -> String {
    eventually(Duration::from_secs(60), needle, || {
        let mut browser = Browser {
            http: browser.http.clone(),
            cookies: browser.cookies.clone(),
            origin: browser.origin.clone(),
        };
        let url = url.to_owned();
        let needle = needle.to_owned();
        async move {
            let page = browser.get(&url).await;
            (page.body.contains(&needle) && !page.body.contains("http-equiv=\"refresh\""))
                .then_some(page.body)
        }
    })
    .await
}

#[tokio::test]
async fn a_platform_admin_searches_moves_restores_and_reads_the_fleet_pages() {
    let fleet = tenancy_testkit::TestFleet::builder()
        .server("pg-1", "local")
        .server("pg-2", "local")
        .build()
        .unwrap();
    let app = TestApp::start_on(fleet, dev_settings(), |config| {
        // No scheduled round during the test; a free tenant is past its interval at once.
        config.backups.schedule_every = Duration::from_secs(3600);
        let free = config.tiers.get_mut("free").unwrap();
        free.backups.as_mut().unwrap().interval = Duration::from_secs(1);
    })
    .await;
    let (contoso, northwind) = ("263014839179300051", "263014839179300052");
    onboard(&app, contoso, "Contoso Ltd").await;
    onboard(&app, northwind, "Northwind").await;
    let base = app.base().to_owned();
    let mut browser = sign_in_dev(&base).await;

    // Search: a part of the name, any case; the database's name; nothing.
    let found = browser
        .get(&format!("{base}/console/tenants?q=contoso"))
        .await;
    assert!(
        found.body.contains(contoso) && !found.body.contains(northwind),
        "{}",
        found.body
    );
    let (_, tenant) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{northwind}"), None)
        .await;
    let db = tenant["db_name"].as_str().unwrap();
    let found = browser.get(&format!("{base}/console/tenants?q={db}")).await;
    assert!(
        found.body.contains(northwind) && !found.body.contains(contoso),
        "{}",
        found.body
    );
    let none = browser
        .get(&format!("{base}/console/tenants?q=fabrikam"))
        .await;
    assert!(none.body.contains("No tenant matches."), "{}", none.body);
    let long = "x".repeat(201);
    let refused = browser
        .get(&format!("{base}/console/tenants?q={long}"))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .admin_call(Method::GET, &format!("/v1/tenants?search={long}"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A NUL byte PostgreSQL would refuse in text: refused here first, as any control character.
    let (status, _) = app
        .admin_call(Method::GET, "/v1/tenants?search=a%00b", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The API searches the same way.
    let (status, page) = app
        .admin_call(Method::GET, "/v1/tenants?search=NORTH", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["org_id"], northwind);

    // The overview: counts by tier and kind, nothing failing or moving, both tenants past
    // their (one second) backup interval, never backed up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let overview = browser.get(&format!("{base}/console")).await;
    for needle in [
        "id=\"by-tier\"",
        "href=\"/console/tenants?tier=free\">free</a></td><td>2</td>",
        "href=\"/console/tenants?kind=standalone\">standalone</a></td><td>2</td>",
        "id=\"retrying-none\"",
        "id=\"failed-none\"",
        "id=\"near-quota-none\"",
        "id=\"moves-none\"",
        "id=\"past-backup\"",
    ] {
        assert!(
            overview.body.contains(needle),
            "{needle}: {}",
            overview.body
        );
    }
    assert!(overview.body.contains(northwind) && overview.body.contains("never"));

    // Move Contoso to pg-2: confirmed by its organization id, followed on its page.
    let page_url = format!("{base}/console/tenants/{contoso}");
    let page = browser.get(&page_url).await;
    assert!(
        page.body.contains("<option value=\"pg-2\">pg-2</option>")
            && !page.body.contains("<option value=\"pg-1\">"),
        "the other server only: {}",
        page.body
    );
    let unconfirmed = browser
        .post(&format!("{page_url}/move"), &[("server", "pg-2")])
        .await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    let moved = browser
        .post(
            &format!("{page_url}/move"),
            &[("server", "pg-2"), ("confirm", contoso)],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
    page_with(&browser, &page_url, "<td>pg-1</td><td>pg-2</td>").await;
    let (_, tenant) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{contoso}"), None)
        .await;
    assert_eq!(tenant["server_id"], "pg-2");

    // Operations across tenants, by kind and state.
    let moves = browser
        .get(&format!("{base}/console/operations?kind=move"))
        .await;
    assert!(
        moves.body.contains(contoso) && moves.body.contains("class=\"state succeeded\""),
        "{}",
        moves.body
    );
    assert!(
        !moves.body.contains(northwind),
        "only moves: {}",
        moves.body
    );
    let provisions = browser
        .get(&format!(
            "{base}/console/operations?kind=provision&state=succeeded"
        ))
        .await;
    assert!(provisions.body.contains(northwind) && provisions.body.contains(contoso));
    let bogus = browser
        .get(&format!("{base}/console/operations?state=sleeping"))
        .await;
    assert_eq!(bogus.status, StatusCode::BAD_REQUEST);

    // Schema versions per server, and the drift check on demand.
    let migrations = browser.get(&format!("{base}/console/migrations")).await;
    assert!(
        migrations.body.contains("id=\"versions\"")
            && migrations.body.contains("pg-2")
            && migrations.body.contains("id=\"failures-none\"")
            && migrations.body.contains("id=\"check-drift\""),
        "{}",
        migrations.body
    );
    let drift = browser
        .get(&format!("{base}/console/migrations?drift=1"))
        .await;
    assert!(drift.body.contains("id=\"drift-none\""), "{}", drift.body);

    // Back up, then restore from that backup, confirmed; the data comes back.
    let backed_up = browser.post(&format!("{page_url}/backup"), &[]).await;
    assert_eq!(backed_up.status, StatusCode::SEE_OTHER);
    let page = page_with(&browser, &page_url, "id=\"restore-backup\"").await;
    let marker = "<select name=\"backup\" id=\"restore-backup\"><option value=\"\">-</option><option value=\"";
    let start = page.find(marker).expect("a backup to restore from") + marker.len();
    let backup_id = page[start..].split('"').next().unwrap().to_owned();
    let db = tenant["db_name"].as_str().unwrap().to_owned();
    app.fleet()
        .cluster("pg-2")
        .psql(&db, "CREATE TABLE after_backup (i int)")
        .unwrap();
    let neither = browser
        .post(&format!("{page_url}/restore"), &[("confirm", contoso)])
        .await;
    assert_eq!(neither.status, StatusCode::BAD_REQUEST);
    // A moment: in RFC 3339, and in the window (this server's WAL is not archived: none is).
    let unreadable = browser
        .post(
            &format!("{page_url}/restore"),
            &[("at", "yesterday"), ("confirm", contoso)],
        )
        .await;
    assert_eq!(unreadable.status, StatusCode::BAD_REQUEST);
    let outside = browser
        .post(
            &format!("{page_url}/restore"),
            &[("at", "2026-01-01T00:00:00Z"), ("confirm", contoso)],
        )
        .await;
    assert_eq!(outside.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(outside.body.contains("not archived"), "{}", outside.body);
    let unconfirmed = browser
        .post(&format!("{page_url}/restore"), &[("backup", &backup_id)])
        .await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    let restored = browser
        .post(
            &format!("{page_url}/restore"),
            &[("backup", &backup_id), ("confirm", contoso)],
        )
        .await;
    assert_eq!(restored.status, StatusCode::SEE_OTHER, "{}", restored.body);
    page_with(&browser, &page_url, "pre_restore</td><td>completed").await;
    let (_, operations) = app
        .admin_call(
            Method::GET,
            &format!("/v1/tenants/{contoso}/operations"),
            None,
        )
        .await;
    let restore = operations
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "restore")
        .unwrap_or_else(|| panic!("{operations}"));
    assert_eq!(restore["state"], "succeeded", "{restore}");
    let tables = app
        .fleet()
        .cluster("pg-2")
        .psql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'after_backup'",
        )
        .unwrap();
    assert_eq!(
        tables.trim(),
        "0",
        "the backup's data, from before the table"
    );
    // Drain pg-1 (its id typed to confirm): placement skips it; activate it again.
    let servers = browser.get(&format!("{base}/console/servers")).await;
    assert!(
        servers.body.contains("id=\"drain-pg-1\""),
        "{}",
        servers.body
    );
    let unconfirmed = browser
        .post(&format!("{base}/console/servers/pg-1/drain"), &[])
        .await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    let drained = browser
        .post(
            &format!("{base}/console/servers/pg-1/drain"),
            &[("confirm", "pg-1")],
        )
        .await;
    assert_eq!(drained.status, StatusCode::SEE_OTHER);
    let (_, server) = app.admin_call(Method::GET, "/v1/servers", None).await;
    let pg1 = server
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "pg-1")
        .unwrap_or_else(|| panic!("{server}"));
    assert_eq!(pg1["state"], "draining");
    let servers = browser.get(&format!("{base}/console/servers")).await;
    assert!(
        servers.body.contains("id=\"activate-pg-1\""),
        "{}",
        servers.body
    );
    let activated = browser
        .post(&format!("{base}/console/servers/pg-1/activate"), &[])
        .await;
    assert_eq!(activated.status, StatusCode::SEE_OTHER);
    let servers = browser.get(&format!("{base}/console/servers")).await;
    assert!(servers.body.contains("id=\"drain-pg-1\""));

    // Contoso has a backup now (its one-second interval may have passed again since: then it
    // is listed with that backup's time); Northwind still has none.
    let overview = browser.get(&format!("{base}/console")).await;
    let past = &overview.body[overview.body.find("id=\"past-backup\"").unwrap()..];
    let row = |org: &str| {
        past.lines()
            .find(|line| line.contains(&format!(">{org}</a>")))
            .map(str::to_owned)
    };
    assert!(
        row(northwind).is_some_and(|r| r.contains("<td>never</td>")),
        "{past}"
    );
    assert!(
        row(contoso).is_none_or(|r| !r.contains("<td>never</td>")),
        "{past}"
    );
}

/// The remaining tenant actions from the console, each doing what the API's does, with the
/// API's refusals: resume, rotate credentials, retry, cancel a move, delete.
#[tokio::test]
async fn every_other_tenant_action_does_what_the_api_does() {
    let app = TestApp::start_with(dev_settings(), Vec::new(), |_| {}).await;
    let org = "263014839179300061";
    onboard(&app, org, "Tailspin Toys").await;
    let base = app.base().to_owned();
    let browser = sign_in_dev(&base).await;
    let mut browser = browser;
    let page_url = format!("{base}/console/tenants/{org}");
    let act = |action: &str| format!("{page_url}/{action}");
    let (_, before) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{org}/connection"), None)
        .await;

    // Nothing failed, no move under way: the API's 409s, as pages.
    let retry = browser.post(&act("retry"), &[]).await;
    assert_eq!(retry.status, StatusCode::CONFLICT, "{}", retry.body);
    let cancel = browser.post(&act("cancel-move"), &[]).await;
    assert_eq!(cancel.status, StatusCode::CONFLICT, "{}", cancel.body);
    let unknown = browser.post(&act("explode"), &[("confirm", org)]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let suspended = browser.post(&act("suspend"), &[("confirm", org)]).await;
    assert_eq!(suspended.status, StatusCode::SEE_OTHER);
    page_with(&browser, &page_url, "class=\"status suspended\"").await;
    let resumed = browser.post(&act("resume"), &[]).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    page_with(&browser, &page_url, "class=\"status active\"").await;

    let unconfirmed = browser.post(&act("rotate-credentials"), &[]).await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    let rotated = browser
        .post(&act("rotate-credentials"), &[("confirm", org)])
        .await;
    assert_eq!(rotated.status, StatusCode::SEE_OTHER);
    page_with(
        &browser,
        &page_url,
        "<td>rotate_credentials</td><td class=\"state succeeded\">",
    )
    .await;
    let (_, after) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{org}/connection"), None)
        .await;
    assert_ne!(before["password"], after["password"], "a new password");

    let deleted = browser.post(&act("delete"), &[("confirm", org)]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    let gone = page_with(&browser, &page_url, "class=\"status deleted\"").await;
    assert!(gone.contains("tenant.delete"), "audited: {gone}");
}

/// An onboarding that cannot succeed yet (no server has room) shows on the overview while it
/// is retried, then among the failed, and on the operations page by state; once the cause is
/// gone, it is retried from the console and succeeds.
#[tokio::test]
async fn retrying_and_failed_operations_show_on_the_overview_and_are_retried_from_it() {
    let app = TestApp::start_with(dev_settings(), Vec::new(), |config| {
        config.engine.max_attempts = 3;
        config.engine.backoff_base = Duration::from_secs(2);
        config.engine.backoff_max = Duration::from_secs(2);
        config.servers[0].capacity = 0;
    })
    .await;
    let org = "263014839179300071";
    let (status, body) = app
        .admin_call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"org_id": org, "name": "Wayne"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let base = app.base().to_owned();
    let browser = sign_in_dev(&base).await;
    let retrying = page_with(
        &browser,
        &format!("{base}/console"),
        "<table id=\"retrying\">",
    )
    .await;
    let section = &retrying[retrying.find("id=\"retrying\"").unwrap()..];
    assert!(
        section.contains(org) && section.contains("provision"),
        "{section}"
    );
    let failed = page_with(
        &browser,
        &format!("{base}/console"),
        "<table id=\"failed\">",
    )
    .await;
    let section = &failed[failed.find("id=\"failed\"").unwrap()..];
    assert!(
        section.contains(org) && section.contains("free capacity"),
        "{section}"
    );
    assert!(failed.contains("id=\"retrying-none\""), "no longer retried");
    let listed = page_with(
        &browser,
        &format!("{base}/console/operations?state=failed&retried=1"),
        org,
    )
    .await;
    assert!(listed.contains("class=\"state failed\""), "{listed}");

    app.fleet()
        .cluster("pg-1")
        .psql(
            "tenancy_registry",
            "UPDATE database_servers SET capacity = 10",
        )
        .unwrap();
    let mut browser = browser;
    let retried = browser
        .post(&format!("{base}/console/tenants/{org}/retry"), &[])
        .await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.body);
    page_with(
        &browser,
        &format!("{base}/console/tenants/{org}"),
        "class=\"status active\"",
    )
    .await;

    // Past 95% of its storage quota (as the usage sampler records it): near quota.
    app.fleet()
        .cluster("pg-1")
        .psql(
            "tenancy_registry",
            &format!("UPDATE tenants SET storage_warning = 95 WHERE org_id = '{org}'"),
        )
        .unwrap();
    let overview = page_with(
        &browser,
        &format!("{base}/console"),
        "<table id=\"near-quota\">",
    )
    .await;
    let section = &overview[overview.find("id=\"near-quota\"").unwrap()..];
    assert!(
        section.contains(org) && section.contains("past 95% of its quota"),
        "{section}"
    );
}

/// An agency's admin: their agency and its clients, with the API's rules (they may suspend a
/// client, not delete nor move it), and nobody else's tenant.
#[tokio::test]
async fn an_agency_admin_sees_and_suspends_its_clients_only() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let app = with_zitadel(&zitadel, Duration::from_secs(600)).await;
    let (agency, client, other) = (
        "263014839179300081",
        "263014839179300082",
        "263014839179300083",
    );
    for request in [
        json!({"org_id": agency, "name": "Northwind MSP", "kind": "agency"}),
        json!({"org_id": client, "name": "Contoso", "parent_org_id": agency}),
        json!({"org_id": other, "name": "Globex"}),
    ] {
        let (status, body) = app
            .admin_call(Method::POST, "/v1/tenants?wait=30s", Some(request))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    zitadel.add_person(
        "max",
        "secret",
        TokenClaims::new("263014839179200081", agency, roles::TENANT_ADMIN),
    );
    let base = app.base().to_owned();
    let mut browser = Browser::new(&base);
    let first = sign_in(&app, &mut browser, "max").await;
    assert!(first.body.contains(agency) && !first.body.contains(other));

    let own = browser
        .get(&format!("{base}/console/tenants/{agency}"))
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(
        own.body.contains("<section id=\"clients\">")
            && own.body.contains(&format!("/console/tenants/{client}")),
        "{}",
        own.body
    );
    let page_url = format!("{base}/console/tenants/{client}");
    let page = browser.get(&page_url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("id=\"action-suspend\"")
            && !page.body.contains("id=\"action-delete\"")
            && !page.body.contains("id=\"action-move\""),
        "{}",
        page.body
    );
    for action in ["delete", "move"] {
        let refused = browser
            .post(&format!("{page_url}/{action}"), &[("confirm", client)])
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{action}");
    }
    let suspended = browser
        .post(&format!("{page_url}/suspend"), &[("confirm", client)])
        .await;
    assert_eq!(
        suspended.status,
        StatusCode::SEE_OTHER,
        "{}",
        suspended.body
    );
    page_with(&browser, &page_url, "class=\"status suspended\"").await;

    let theirs = browser
        .get(&format!("{base}/console/tenants/{other}"))
        .await;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    let refused = browser
        .post(
            &format!("{base}/console/tenants/{other}/suspend"),
            &[("confirm", other)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}
