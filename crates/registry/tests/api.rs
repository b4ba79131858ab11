//! In-process tests of authorization: the real application with a test authenticator that maps
//! fixed tokens to callers with given roles.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tenancy_control::Config;
use tenancy_registry::auth::Authenticator;
use tenancy_registry::{Application, Settings};
use tenancy_testkit::PgCluster;

mod common;
use common::{TestApp, dev_settings, single_server};
use tenancy_zitadel::{Caller, roles};

/// `tenant-admin-<org>` is a tenant admin of `<org>`; `router` holds `tenant_router`.
struct TestTokens;

impl Authenticator for TestTokens {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<Caller>> + Send + 'a>> {
        let caller = if let Some(org) = token.strip_prefix("tenant-admin-") {
            let org = org.parse().ok();
            org.map(|org: tenancy_core::OrgId| Caller {
                subject: format!("admin-of-{org}"),
                org_id: Some(org.clone()),
                roles: BTreeMap::from([(roles::TENANT_ADMIN.to_owned(), BTreeSet::from([org]))]),
            })
        } else if token == "router" {
            Some(Caller {
                subject: "svc".into(),
                org_id: Some("900".parse().unwrap()),
                roles: BTreeMap::from([(
                    roles::TENANT_ROUTER.to_owned(),
                    BTreeSet::from(["900".parse().unwrap()]),
                )]),
            })
        } else {
            None
        };
        Box::pin(async move { caller })
    }
}

async fn start() -> TestApp {
    TestApp::start_with(dev_settings(), vec![Arc::new(TestTokens)], |_| {}).await
}

#[tokio::test]
async fn a_tenant_admin_sees_its_own_tenant_only_and_changes_nothing() {
    let app = start().await;
    for (org, name) in [("100", "Own Org"), ("200", "Other Org")] {
        let (status, _) = app
            .call(
                "dev",
                Method::POST,
                "/v1/tenants?wait=30s",
                Some(json!({"org_id": org, "name": name})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let admin = "tenant-admin-100";
    for path in [
        "/v1/tenants/100",
        "/v1/tenants/100/usage",
        "/v1/tenants/100/health",
        "/v1/tenants/100/operations",
    ] {
        let (status, body) = app.call(admin, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    for (method, path) in [
        (Method::GET, "/v1/tenants/200"),
        (Method::GET, "/v1/tenants/200/usage"),
        (Method::GET, "/v1/tenants/200/operations"),
        (Method::GET, "/v1/tenants"),
        (Method::GET, "/v1/tenants/100/connection"),
        (Method::GET, "/v1/changes?wait=0s"),
        (Method::POST, "/v1/tenants/100/suspend"),
        (Method::DELETE, "/v1/tenants/100"),
        (Method::GET, "/v1/servers"),
        (Method::GET, "/v1/audit"),
    ] {
        let (status, body) = app.call(admin, method.clone(), path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(body["code"], "forbidden");
    }
    let (status, _) = app
        .call(
            admin,
            Method::POST,
            "/v1/tenants",
            Some(json!({"org_id": "300", "name": "Sneaky"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, own) = app.call("dev", Method::GET, "/v1/tenants/100", None).await;
    assert_eq!(own["status"], "active");
    let (status, _) = app.call("dev", Method::GET, "/v1/tenants/300", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_router_service_reads_connection_info_and_changes_only() {
    let app = start().await;
    let (status, _) = app
        .call(
            "dev",
            Method::POST,
            "/v1/tenants?wait=30s",
            Some(json!({"org_id": "100", "name": "Routed"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, info) = app
        .call("router", Method::GET, "/v1/tenants/100/connection", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["user"], "tenant_routed");
    let (status, feed) = app
        .call("router", Method::GET, "/v1/changes?after=0&wait=0s", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed["changes"][0]["org_id"], "100");
    for (method, path) in [
        (Method::GET, "/v1/tenants"),
        (Method::GET, "/v1/tenants/100"),
        (Method::POST, "/v1/tenants/100/suspend"),
    ] {
        let (status, _) = app.call("router", method.clone(), path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // A suspended tenant's connection info carries no password.
    app.call("dev", Method::POST, "/v1/tenants/100/suspend", None)
        .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, info) = app
            .call("router", Method::GET, "/v1/tenants/100/connection", None)
            .await;
        if info["status"] == "suspended" {
            assert!(info.get("password").is_none(), "{info}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_development_token_is_refused_off_loopback() {
    let mut settings = Settings::new("0.0.0.0:0".parse().unwrap());
    settings.dev_token = Some(SecretString::from("dev"));
    let config = Config::new("postgres://unused@127.0.0.1:1/x");
    let err = Application::build_with(settings, config, Vec::new())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}

/// Real ZITADEL tokens (from the stand-in) through the registry: a tenant admin of one
/// organization is refused on another; a platform admin and a router service get their routes.
#[tokio::test]
async fn zitadel_tokens_are_verified_and_mapped_to_roles() {
    use tenancy_testkit::{TokenClaims, ZitadelStandIn};
    use tenancy_zitadel::roles;

    let zitadel = ZitadelStandIn::start().await.unwrap();
    let cluster = PgCluster::start().unwrap();
    cluster.create_database("tenancy_registry").unwrap();
    let mut config = single_server(&cluster);
    config.engine.poll_interval = std::time::Duration::from_millis(100);
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap());
    settings.zitadel_issuer = Some(zitadel.issuer.clone());
    settings.zitadel_project_id = Some(zitadel.project_id().into());
    let (id, secret) = zitadel.client();
    settings.zitadel_client_id = Some(id.into());
    settings.zitadel_client_secret = Some(SecretString::from(secret));
    let base = Application::spawn(settings, config, Vec::new())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let call = |token: String, method: Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move { request.send().await.unwrap().status() }
    };

    let platform = zitadel.jwt(&TokenClaims::new("ops", "1", roles::PLATFORM_ADMIN));
    for (org, name) in [("100", "Zitadel A"), ("200", "Zitadel B")] {
        let status = call(
            platform.clone(),
            Method::POST,
            "/v1/tenants?wait=30s",
            Some(json!({"org_id": org, "name": name})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let admin_a = zitadel.jwt(&TokenClaims::new("alice", "100", roles::TENANT_ADMIN));
    assert_eq!(
        call(admin_a.clone(), Method::GET, "/v1/tenants/100", None).await,
        StatusCode::OK
    );
    assert_eq!(
        call(admin_a.clone(), Method::GET, "/v1/tenants/200", None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(admin_a, Method::POST, "/v1/tenants/100/suspend", None).await,
        StatusCode::FORBIDDEN
    );

    // Opaque tokens go through introspection.
    let router = zitadel.opaque(&TokenClaims::new("svc", "1", roles::TENANT_ROUTER));
    assert_eq!(
        call(
            router.clone(),
            Method::GET,
            "/v1/tenants/200/connection",
            None
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        call(router, Method::GET, "/v1/tenants", None).await,
        StatusCode::FORBIDDEN
    );

    let mut expired = TokenClaims::new("ops", "1", roles::PLATFORM_ADMIN);
    expired.expires_in = -3600;
    assert_eq!(
        call(zitadel.jwt(&expired), Method::GET, "/v1/tenants", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("garbage".into(), Method::GET, "/v1/tenants", None).await,
        StatusCode::UNAUTHORIZED
    );
}

/// ZITADEL organization events through the signed webhook: each reaches the right tenant state,
/// duplicates and replays change nothing, bad signatures and old timestamps are refused.
#[tokio::test]
async fn organization_events_drive_the_tenant_lifecycle() {
    use tenancy_zitadel::webhook::sign;

    let cluster = PgCluster::start().unwrap();
    cluster.create_database("tenancy_registry").unwrap();
    let mut config = single_server(&cluster);
    config.engine.poll_interval = std::time::Duration::from_millis(100);
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap());
    settings.dev_token = Some(SecretString::from("dev"));
    settings.zitadel_webhook_keys = Some(SecretString::from("old-key, signing-key"));
    let base = Application::spawn(settings, config, Vec::new())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let post = |event: Value, key: &'static str, at: i64, header: &'static str| {
        let body = event.to_string();
        let signature = sign(body.as_bytes(), key, at);
        let request = http
            .post(format!("{base}/v1/zitadel/events"))
            .header(header, signature)
            .body(body);
        async move { request.send().await.unwrap().status() }
    };
    let event = |kind: &str, seq: i64| {
        json!({"aggregateID": "263014839178313731", "aggregateType": "org", "resourceOwner": "263014839178313731",
               "instanceID": "1", "version": "v1", "sequence": seq, "event_type": kind,
               "created_at": "2026-11-22T14:00:00.123Z", "userID": "9", "event_payload": {"name": "Acme Events"}})
    };
    let status_of = || {
        let request = http
            .get(format!("{base}/v1/tenants/263014839178313731"))
            .bearer_auth("dev");
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap_or(Value::Null)["status"]
                .clone()
        }
    };
    let wait_for = |wanted: &'static str| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while status_of().await != wanted {
            assert!(std::time::Instant::now() < deadline, "never {wanted}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };

    // Refused: wrong key, old timestamp, no signature.
    assert_eq!(
        post(
            event("org.added", 1),
            "wrong-key",
            now(),
            "zitadel-signature"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(
            event("org.added", 1),
            "signing-key",
            now() - 3600,
            "zitadel-signature"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    let unsigned = http
        .post(format!("{base}/v1/zitadel/events"))
        .body(event("org.added", 1).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = app_call(&http, &base, "/v1/tenants/263014839178313731").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "refused events changed nothing"
    );

    // added -> onboarded (delivered twice, under both header names: one tenant, one operation).
    assert_eq!(
        post(
            event("org.added", 1),
            "signing-key",
            now(),
            "zitadel-signature"
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        post(
            event("org.added", 1),
            "old-key",
            now(),
            "x-zitadel-signature"
        )
        .await,
        StatusCode::OK
    );
    wait_for("active").await;
    let (_, ops) = app_call(&http, &base, "/v1/tenants/263014839178313731/operations").await;
    assert_eq!(ops.as_array().unwrap().len(), 1);

    // deactivated -> suspended; a replay of it after the reactivation is ignored.
    assert_eq!(
        post(
            event("org.deactivated", 2),
            "signing-key",
            now(),
            "zitadel-signature"
        )
        .await,
        StatusCode::OK
    );
    // Reactivated right away, while the suspension's operation may still run.
    assert_eq!(
        post(
            event("org.reactivated", 3),
            "signing-key",
            now(),
            "zitadel-signature"
        )
        .await,
        StatusCode::OK
    );
    wait_for("active").await;
    assert_eq!(
        post(
            event("org.deactivated", 2),
            "signing-key",
            now(),
            "zitadel-signature"
        )
        .await,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        status_of().await,
        "active",
        "a replayed old event changes nothing"
    );

    // removed -> deleting, then deleted.
    assert_eq!(
        post(
            event("org.removed", 4),
            "signing-key",
            now(),
            "zitadel-signature"
        )
        .await,
        StatusCode::OK
    );
    wait_for("deleted").await;
}

async fn app_call(http: &reqwest::Client, base: &str, path: &str) -> (StatusCode, Value) {
    let response = http
        .get(format!("{base}{path}"))
        .bearer_auth("dev")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}
