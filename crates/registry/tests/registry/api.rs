//! In-process tests of authorization: the real application with a test authenticator that maps
//! fixed tokens to callers with given roles.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tenancy_control::Config;
use tenancy_registry::auth::{AuthError, Authenticator};
use tenancy_registry::{Application, Settings};

use crate::common::{DEV_TOKEN, TestApp, Webhook, dev_settings};
use tenancy_zitadel::{Caller, roles};

/// `tenant-admin-<org>` is a tenant admin of `<org>`; `router` holds `tenant_router`.
struct TestTokens;

impl Authenticator for TestTokens {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
        _client: Option<std::net::IpAddr>,
    ) -> Pin<Box<dyn Future<Output = Result<Caller, AuthError>> + Send + 'a>> {
        let caller = if let Some(org) = token.strip_prefix("tenant-admin-") {
            let org = org.parse().ok();
            org.map(|org: tenancy_core::OrgId| Caller {
                subject: format!("admin-of-{org}"),
                org_id: Some(org.clone()),
                roles: BTreeMap::from([(roles::TENANT_ADMIN.to_owned(), BTreeSet::from([org]))]),
            })
        } else if token == "platform-admin" {
            Some(Caller {
                subject: "operator".into(),
                org_id: Some("900".parse().unwrap()),
                roles: BTreeMap::from([(
                    roles::PLATFORM_ADMIN.to_owned(),
                    BTreeSet::from(["900".parse().unwrap()]),
                )]),
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
        Box::pin(async move { caller.ok_or(AuthError::Refused) })
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
                DEV_TOKEN,
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
    let (_, own) = app
        .call(DEV_TOKEN, Method::GET, "/v1/tenants/100", None)
        .await;
    assert_eq!(own["status"], "active");
    let (status, _) = app
        .call(DEV_TOKEN, Method::GET, "/v1/tenants/300", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_router_service_reads_connection_info_and_changes_only() {
    let app = start().await;
    let (status, _) = app
        .call(
            DEV_TOKEN,
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
    // Connection passwords are for router services, not for people (first security review,
    // L14): a platform admin without tenant_router is refused them.
    let (status, refused) = app
        .call(
            "platform-admin",
            Method::GET,
            "/v1/tenants/100/connection",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, _) = app
        .call("platform-admin", Method::GET, "/v1/tenants/100", None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the rest of the API is the platform admin's"
    );
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
    app.call(DEV_TOKEN, Method::POST, "/v1/tenants/100/suspend", None)
        .await;
    let info = tenancy_testkit::eventually(
        std::time::Duration::from_secs(30),
        "connection info shows the suspension",
        || async {
            let (_, info) = app
                .call("router", Method::GET, "/v1/tenants/100/connection", None)
                .await;
            (info["status"] == "suspended").then_some(info)
        },
    )
    .await;
    assert!(info.get("password").is_none(), "{info}");
}

#[tokio::test]
async fn the_development_token_is_refused_off_loopback() {
    let mut settings = Settings::new("0.0.0.0:0".parse().unwrap());
    settings.dev_token = Some(SecretString::from(DEV_TOKEN));
    let config = Config::new("postgres://unused@127.0.0.1:1/x");
    let err = Application::build_with(settings, config, Vec::new())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn a_short_development_token_or_one_beside_zitadel_is_refused() {
    let config = || Config::new("postgres://unused@127.0.0.1:1/x");
    let mut short = dev_settings();
    short.dev_token = Some(SecretString::from("short-token"));
    let err = Application::build_with(short, config(), Vec::new())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("at least 32"), "{err}");

    let mut beside = dev_settings();
    beside.zitadel.issuer = Some("https://id.example".into());
    beside.zitadel.project_id = Some("1".into());
    beside.zitadel.platform_org_id = Some("2".parse().unwrap());
    let err = Application::build_with(beside, config(), Vec::new())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("ZITADEL"), "{err}");

    // ZITADEL tokens without the platform organization: refused too.
    let mut no_platform = Settings::new("127.0.0.1:0".parse().unwrap());
    no_platform.zitadel.issuer = Some("https://id.example".into());
    no_platform.zitadel.project_id = Some("1".into());
    let err = Application::build_with(no_platform, config(), Vec::new())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("PLATFORM_ORG_ID"), "{err}");
}

/// Real ZITADEL tokens (from the stand-in) through the registry: a tenant admin of one
/// organization is refused on another; a platform admin and a router service get their routes.
#[tokio::test]
async fn zitadel_tokens_are_verified_and_mapped_to_roles() {
    use tenancy_testkit::{TokenClaims, ZitadelStandIn};
    use tenancy_zitadel::roles;

    let zitadel = ZitadelStandIn::start().await.unwrap();
    // No development token: ZITADEL's tokens are the only way in.
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap());
    settings.zitadel.issuer = Some(zitadel.issuer.clone());
    settings.zitadel.project_id = Some(zitadel.project_id().into());
    settings.zitadel.platform_org_id = Some(tenancy_testkit::PLATFORM_ORG_ID.parse().unwrap());
    let (id, secret) = zitadel.client();
    settings.zitadel.client_id = Some(id.into());
    settings.zitadel.client_secret = Some(SecretString::from(secret));
    let app = TestApp::start_with(settings, Vec::new(), |_| {}).await;

    let platform = zitadel.jwt(&TokenClaims::platform("ops", roles::PLATFORM_ADMIN));
    for (org, name) in [("100", "Zitadel A"), ("200", "Zitadel B")] {
        let answered = status(
            &app,
            &platform,
            Method::POST,
            "/v1/tenants?wait=30s",
            Some(json!({"org_id": org, "name": name})),
        )
        .await;
        assert_eq!(answered, StatusCode::CREATED);
    }
    let admin_a = zitadel.jwt(&TokenClaims::new("alice", "100", roles::TENANT_ADMIN));
    assert_eq!(
        status(&app, &admin_a, Method::GET, "/v1/tenants/100", None).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, &admin_a, Method::GET, "/v1/tenants/200", None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(
            &app,
            &admin_a,
            Method::POST,
            "/v1/tenants/100/suspend",
            None
        )
        .await,
        StatusCode::FORBIDDEN
    );

    // Opaque tokens go through introspection.
    let router = zitadel.opaque(&TokenClaims::platform("svc", roles::TENANT_ROUTER));
    assert_eq!(
        status(
            &app,
            &router,
            Method::GET,
            "/v1/tenants/200/connection",
            None
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, &router, Method::GET, "/v1/tenants", None).await,
        StatusCode::FORBIDDEN
    );

    // Platform roles from another organization, or from another project's claim: nothing.
    let elsewhere = zitadel.jwt(&TokenClaims::new("mallory", "100", roles::PLATFORM_ADMIN));
    let mut foreign = TokenClaims::platform("mallory", roles::PLATFORM_ADMIN);
    foreign.project = "263014839178399999".into();
    for token in [elsewhere, zitadel.jwt(&foreign)] {
        assert_eq!(
            status(&app, &token, Method::GET, "/v1/tenants", None).await,
            StatusCode::FORBIDDEN
        );
    }

    let mut expired = TokenClaims::platform("ops", roles::PLATFORM_ADMIN);
    expired.expires_in = -3600;
    assert_eq!(
        status(
            &app,
            &zitadel.jwt(&expired),
            Method::GET,
            "/v1/tenants",
            None
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&app, "garbage", Method::GET, "/v1/tenants", None).await,
        StatusCode::UNAUTHORIZED
    );
}

/// Only the status of an answer.
async fn status(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> StatusCode {
    app.call(token, method, path, body).await.0
}

/// ZITADEL organization events through the signed webhook: each reaches the right tenant state,
/// duplicates and replays change nothing, bad signatures and old timestamps are refused.
#[tokio::test]
async fn organization_events_drive_the_tenant_lifecycle() {
    let mut settings = dev_settings();
    settings.zitadel.webhook_keys = Some(SecretString::from("old-key, signing-key"));
    let app = TestApp::start_with(settings, Vec::new(), |_| {}).await;
    const ORG: &str = "263014839178313731";
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let event = |kind: &str, seq: i64| {
        json!({"aggregateID": ORG, "aggregateType": "org", "resourceOwner": ORG,
               "instanceID": "1", "version": "v1", "sequence": seq, "event_type": kind,
               "created_at": "2026-11-22T14:00:00.123Z", "userID": "9", "event_payload": {"name": "Acme Events"}})
    };
    // Delivered signed with `key` at `at`, under the signature header `header`.
    let post = |kind: &str, seq: i64, key: &'static str, at: i64, header: &'static str| {
        let body = event(kind, seq).to_string();
        let signature = tenancy_zitadel::webhook::sign(body.as_bytes(), key, at);
        let request = app
            .http
            .post(format!("{}/v1/zitadel/events", app.base()))
            .header(header, signature)
            .body(body);
        async move { request.send().await.unwrap().status() }
    };
    // Delivered as ZITADEL does: signed now with the current key.
    let deliver = |kind: &str, seq: i64| post(kind, seq, "signing-key", now(), "zitadel-signature");

    // Refused: wrong key, old timestamp, no signature.
    let refused = [
        post("org.added", 1, "wrong-key", now(), "zitadel-signature").await,
        post(
            "org.added",
            1,
            "signing-key",
            now() - 3600,
            "zitadel-signature",
        )
        .await,
        app.http
            .post(format!("{}/v1/zitadel/events", app.base()))
            .body(event("org.added", 1).to_string())
            .send()
            .await
            .unwrap()
            .status(),
    ];
    assert_eq!(refused, [StatusCode::UNAUTHORIZED; 3]);
    let (status, _) = app
        .call(DEV_TOKEN, Method::GET, &format!("/v1/tenants/{ORG}"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "refused events changed nothing"
    );

    // added -> onboarded (delivered twice, under both header names: one tenant, one operation).
    assert_eq!(deliver("org.added", 1).await, StatusCode::OK);
    assert_eq!(
        post("org.added", 1, "old-key", now(), "x-zitadel-signature").await,
        StatusCode::OK
    );
    app.wait_status(ORG, "active").await;
    let (_, ops) = app
        .call(
            DEV_TOKEN,
            Method::GET,
            &format!("/v1/tenants/{ORG}/operations"),
            None,
        )
        .await;
    assert_eq!(ops.as_array().unwrap().len(), 1);

    // deactivated -> suspended; a replay of it after the reactivation is ignored.
    assert_eq!(deliver("org.deactivated", 2).await, StatusCode::OK);
    // Reactivated right away, while the suspension's operation may still run: the events are
    // applied in their order, the reactivation once the suspension is done.
    assert_eq!(deliver("org.reactivated", 3).await, StatusCode::OK);
    app.wait_until(&format!("/v1/tenants/{ORG}/operations"), |ops| {
        ops[0]["kind"] == "resume" && ops[0]["state"] == "succeeded"
    })
    .await;
    assert_eq!(deliver("org.deactivated", 2).await, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, tenant) = app
        .call(DEV_TOKEN, Method::GET, &format!("/v1/tenants/{ORG}"), None)
        .await;
    assert_eq!(
        tenant["status"], "active",
        "a replayed old event changes nothing"
    );

    // removed -> deleting, then deleted.
    assert_eq!(deliver("org.removed", 4).await, StatusCode::OK);
    app.wait_status(ORG, "deleted").await;
}

/// A tenant admin sees stable codes and fixed messages, never a failure's raw cause; another
/// organization's operation does not exist for them (404, as a missing one).
#[tokio::test]
async fn tenant_admins_see_codes_not_causes_and_nothing_of_other_organizations() {
    let app = TestApp::start_with(dev_settings(), vec![Arc::new(TestTokens)], |config| {
        config.engine.max_attempts = 1;
        config.servers[0].capacity = 0;
    })
    .await;
    let (status, op) = app
        .call(
            DEV_TOKEN,
            Method::POST,
            "/v1/tenants",
            Some(json!({"org_id": "100", "name": "Unplaced"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let op_path = format!("/v1/operations/{}", op["id"].as_str().unwrap());
    let failed = app.wait_until(&op_path, |op| op["state"] == "failed").await;
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("region local"),
        "platform admins see the cause: {failed}"
    );
    assert_eq!(failed["last_error_code"], "no_capacity");

    let admin = "tenant-admin-100";
    let (_, seen) = app.call(admin, Method::GET, &op_path, None).await;
    assert_eq!(seen["last_error_code"], "no_capacity");
    assert!(
        !seen["last_error"].as_str().unwrap().contains("local"),
        "{seen}"
    );
    let (_, tenant) = app.call(admin, Method::GET, "/v1/tenants/100", None).await;
    assert_eq!(tenant["status"], "failed");
    assert!(
        !tenant["status_reason"].as_str().unwrap().contains("local"),
        "{tenant}"
    );

    // Another organization's operation: the same answer as one that does not exist.
    let other = "tenant-admin-200";
    let (theirs, body) = app.call(other, Method::GET, &op_path, None).await;
    let (missing, _) = app
        .call(
            other,
            Method::GET,
            "/v1/operations/00000000-0000-0000-0000-000000000000",
            None,
        )
        .await;
    assert_eq!(
        (theirs, missing),
        (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND)
    );
    assert_eq!(body["code"], "not_found");
}

/// The webhook survives any header, records each event once however often and however
/// concurrently it is delivered, answers at once even while the tenant is busy (the event is
/// applied when it can be), and never onboards an ignored organization.
#[tokio::test]
async fn the_webhook_records_events_once_answers_at_once_and_refuses_hostile_headers() {
    let mut settings = dev_settings();
    settings.zitadel.webhook_keys = Some(SecretString::from("signing-key"));
    settings.zitadel.ignore_orgs = vec!["263014839178300009".parse().unwrap()];
    let app = TestApp::start_with(settings, Vec::new(), |config| {
        config.engine.backoff_base = Duration::from_millis(100);
        config.engine.backoff_max = Duration::from_millis(200);
    })
    .await;
    let hook = Webhook {
        app: &app,
        key: "signing-key",
    };

    // Hostile signature headers: refused, and the registry is still there.
    let body = Webhook::body("1", "org.added", 1, "X");
    for header in [
        format!("t={},v1=00", i64::MIN),
        format!("t=1,{}", "v1=00,".repeat(50)),
        "t=nope".to_owned(),
    ] {
        assert_eq!(
            hook.post(body.clone(), header).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.base()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // The same event, ten times at once: recorded and applied once.
    let deliveries = (0..10).map(|_| hook.deliver("700", "org.added", 1, "Once Only"));
    for status in futures::future::join_all(deliveries).await {
        assert_eq!(status, StatusCode::OK);
    }
    app.wait_status("700", "active").await;
    let (_, audit) = app
        .admin_call(Method::GET, "/v1/audit?org_id=700", None)
        .await;
    let creates = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "tenant.create")
        .count();
    assert_eq!(creates, 1);

    // A busy tenant (an operation under way that cannot finish yet): the event is answered at
    // once and applied once the tenant is free.
    app.admin_call(Method::POST, "/v1/servers/pg-1/drain", None)
        .await;
    assert_eq!(
        hook.deliver("701", "org.added", 1, "Busy Corp").await,
        StatusCode::OK
    );
    app.wait_until("/v1/tenants/701/operations", |ops| {
        ops[0]["attempts"].as_i64() >= Some(2)
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(
        hook.deliver("701", "org.removed", 2, "Busy Corp").await,
        StatusCode::OK
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    app.admin_call(Method::POST, "/v1/servers/pg-1/activate", None)
        .await;
    app.wait_status("701", "deleted").await;

    // An ignored organization is never onboarded.
    assert_eq!(
        hook.deliver("263014839178300009", "org.added", 1, "Platform")
            .await,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _) = app
        .admin_call(Method::GET, "/v1/tenants/263014839178300009", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Product services count with `tenant_router`; a tenant's admins read their own quotas, check
/// them and read the usage log, but never count, and see nothing of another organization's.
#[tokio::test]
async fn quotas_are_counted_by_routers_and_read_by_the_tenants_own_admins() {
    let app = start().await;
    for (org, name) in [("100", "Own Org"), ("200", "Other Org")] {
        let (status, _) = app
            .call(
                DEV_TOKEN,
                Method::POST,
                "/v1/tenants",
                Some(json!({"org_id": org, "name": name})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, counted) = app
        .call(
            "router",
            Method::POST,
            "/v1/tenants/100/usage/users",
            Some(json!({"amount": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{counted}");
    assert_eq!(
        (counted["used"].as_i64(), counted["limit"].as_i64()),
        (Some(2), Some(5))
    );

    let admin = "tenant-admin-100";
    let (status, body) = app
        .call(
            admin,
            Method::POST,
            "/v1/tenants/100/usage/users",
            Some(json!({"amount": 1})),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    let (status, quotas) = app
        .call(admin, Method::GET, "/v1/tenants/100/quotas", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let users = quotas
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["resource"] == "users")
        .unwrap();
    assert_eq!(
        (users["used"].as_i64(), users["remaining"].as_i64()),
        (Some(2), Some(3))
    );
    let (status, check) = app
        .call(
            admin,
            Method::POST,
            "/v1/tenants/100/quotas/check",
            Some(json!({"resource": "users", "amount": 4})),
        )
        .await;
    assert_eq!((status, &check["allowed"]), (StatusCode::OK, &json!(false)));
    let (status, log) = app
        .call(admin, Method::GET, "/v1/tenants/100/usage-log", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log["entries"][0]["actor"], "svc");
    for (method, path, body) in [
        (Method::GET, "/v1/tenants/200/quotas", None),
        (Method::GET, "/v1/tenants/200/usage-log", None),
        (
            Method::POST,
            "/v1/tenants/200/quotas/check",
            Some(json!({"resource": "users", "amount": 1})),
        ),
    ] {
        let (status, _) = app.call(admin, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // The check counted nothing.
    let (_, quotas) = app
        .call(DEV_TOKEN, Method::GET, "/v1/tenants/100/quotas", None)
        .await;
    let users = quotas
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["resource"] == "users")
        .unwrap();
    assert_eq!(users["used"], 2);
}

/// A tenant's admins write its settings and see a secret only as set; router services read the
/// secret; no one writes another organization's settings.
#[tokio::test]
async fn tenant_admins_write_their_settings_and_only_routers_and_platform_admins_read_secrets() {
    let app = start().await;
    for (org, name) in [("100", "Own Org"), ("200", "Other Org")] {
        let (status, _) = app
            .call(
                DEV_TOKEN,
                Method::POST,
                "/v1/tenants",
                Some(json!({"org_id": org, "name": name})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let admin = "tenant-admin-100";
    let secret = json!({"type": "secret", "value": "s3cr3t-api-key"});
    let (status, set) = app
        .call(
            admin,
            Method::PUT,
            "/v1/tenants/100/settings/billing.api_key",
            Some(secret.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert!(set.get("value").is_none(), "{set}");
    let (status, own) = app
        .call(
            admin,
            Method::GET,
            "/v1/tenants/100/settings/billing.api_key",
            None,
        )
        .await;
    assert_eq!((status, own.get("value")), (StatusCode::OK, None));
    for token in ["router", DEV_TOKEN] {
        let (status, read) = app
            .call(token, Method::GET, "/v1/tenants/100/settings", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(read[0]["value"], "s3cr3t-api-key", "{token}");
    }
    for (token, method, path) in [
        (
            admin,
            Method::PUT,
            "/v1/tenants/200/settings/billing.api_key",
        ),
        (admin, Method::GET, "/v1/tenants/200/settings"),
        (admin, Method::GET, "/v1/tenants/200/features"),
        (
            "router",
            Method::PUT,
            "/v1/tenants/100/settings/billing.api_key",
        ),
        (
            "router",
            Method::DELETE,
            "/v1/tenants/100/settings/billing.api_key",
        ),
    ] {
        let body = (method == Method::PUT).then(|| secret.clone());
        let (status, _) = app.call(token, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{token} {method} {path}");
    }
    let (status, features) = app
        .call(admin, Method::GET, "/v1/tenants/100/features", None)
        .await;
    assert_eq!((status, &features["enabled"]), (StatusCode::OK, &json!([])));
    let (status, _) = app
        .call(
            admin,
            Method::DELETE,
            "/v1/tenants/100/settings/billing.api_key",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .call(
            admin,
            Method::PUT,
            "/v1/tenants/100/settings/Bad..Key",
            Some(json!({"type": "bool", "value": true})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .call(
            admin,
            Method::PUT,
            "/v1/tenants/100/settings/ok.key",
            Some(json!({"type": "bool", "value": "yes"})),
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!("validation_failed")
        )
    );
}

/// An agency's admins read their clients (tenant, operations, quotas, health) and suspend or
/// resume them, but never create, delete, re-tier or read their connection; they see nothing of
/// another agency's clients, and a client's admin sees only its own tenant.
#[tokio::test]
async fn agency_admins_manage_their_clients_and_nothing_else() {
    let app = start().await;
    for body in [
        json!({"org_id": "500", "name": "Agency A", "kind": "agency"}),
        json!({"org_id": "600", "name": "Agency B", "kind": "agency"}),
        json!({"org_id": "501", "name": "Client A1", "parent_org_id": "500"}),
        json!({"org_id": "502", "name": "Client A2", "parent_org_id": "500"}),
        json!({"org_id": "601", "name": "Client B1", "parent_org_id": "600"}),
    ] {
        let (status, answer) = app
            .call(DEV_TOKEN, Method::POST, "/v1/tenants?wait=30s", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let agency = "tenant-admin-500";
    for path in [
        "/v1/tenants/501",
        "/v1/tenants/501/operations",
        "/v1/tenants/501/health",
        "/v1/tenants/501/quotas",
        "/v1/tenants/500/clients",
    ] {
        let (status, body) = app.call(agency, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (_, clients) = app
        .call(agency, Method::GET, "/v1/tenants/500/clients", None)
        .await;
    let ids: Vec<&str> = clients["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["org_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["501", "502"]);

    let (status, op) = app
        .call(agency, Method::POST, "/v1/tenants/501/suspend", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{op}");
    let op_path = format!("/v1/operations/{}", op["id"].as_str().unwrap());
    app.wait_until(&op_path, |op| op["state"] == "succeeded")
        .await;
    app.wait_status("501", "suspended").await;
    let (status, op) = app
        .call(agency, Method::POST, "/v1/tenants/501/resume", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{op}");
    app.wait_status("501", "active").await;
    let (status, _) = app
        .call(
            agency,
            Method::GET,
            &format!("/v1/operations/{}", op["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The review's N1 repro: the platform's suspensions are not the agency's to lift, directly
    // or through its own suspension's cascade; the agency's own are, while it is active.
    let (status, op) = app
        .call(DEV_TOKEN, Method::POST, "/v1/tenants/501/suspend", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{op}");
    let tenant = app.wait_status("501", "suspended").await;
    assert_eq!(tenant["suspended_by"], "platform");
    let (status, refused) = app
        .call(agency, Method::POST, "/v1/tenants/501/resume", None)
        .await;
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden")),
        "{refused}"
    );
    let (status, op) = app
        .call(DEV_TOKEN, Method::POST, "/v1/tenants/500/suspend", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{op}");
    let tenant = app.wait_status("502", "suspended").await;
    assert_eq!(tenant["suspended_by"], "agency_cascade");
    for client in ["501", "502"] {
        let (status, refused) = app
            .call(
                agency,
                Method::POST,
                &format!("/v1/tenants/{client}/resume"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{client}: {refused}");
    }
    let (status, op) = app
        .call(DEV_TOKEN, Method::POST, "/v1/tenants/500/resume", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{op}");
    app.wait_status("502", "active").await;
    let tenant = app.wait_status("501", "suspended").await;
    assert_eq!(tenant["suspended_by"], "platform", "stays the platform's");

    let forbidden = [
        (agency, Method::GET, "/v1/tenants/601", None),
        (agency, Method::GET, "/v1/tenants/601/operations", None),
        (agency, Method::GET, "/v1/tenants/600/clients", None),
        (agency, Method::POST, "/v1/tenants/601/suspend", None),
        (agency, Method::GET, "/v1/tenants/501/connection", None),
        (agency, Method::DELETE, "/v1/tenants/501", None),
        (
            agency,
            Method::PATCH,
            "/v1/tenants/501",
            Some(json!({"tier": "business"})),
        ),
        (agency, Method::POST, "/v1/tenants/500/suspend", None),
        (
            agency,
            Method::POST,
            "/v1/tenants",
            Some(json!({"org_id": "503", "name": "New", "parent_org_id": "500"})),
        ),
        ("tenant-admin-501", Method::GET, "/v1/tenants/502", None),
        ("tenant-admin-501", Method::GET, "/v1/tenants/500", None),
        (
            "tenant-admin-501",
            Method::POST,
            "/v1/tenants/501/suspend",
            None,
        ),
        (
            "tenant-admin-501",
            Method::GET,
            "/v1/tenants/500/clients",
            None,
        ),
    ];
    for (token, method, path, body) in forbidden {
        let (status, answer) = app.call(token, method.clone(), path, body).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{token} {method} {path}: {answer}"
        );
    }
    // A client's admin reads its own tenant.
    let (status, own) = app
        .call("tenant-admin-501", Method::GET, "/v1/tenants/501", None)
        .await;
    assert_eq!((status, &own["kind"]), (StatusCode::OK, &json!("client")));
    assert_eq!(own["parent_org_id"], "500");
}

/// A tenant's admins back it up, list, download and restore its backups; no one else's.
#[tokio::test]
async fn tenant_admins_back_up_download_and_restore_their_own_tenant_only() {
    let app = start().await;
    for (org, name) in [("100", "Own Org"), ("200", "Other Org")] {
        let (status, _) = app
            .call(
                DEV_TOKEN,
                Method::POST,
                "/v1/tenants?wait=30s",
                Some(json!({"org_id": org, "name": name})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let admin = "tenant-admin-100";
    let (status, op) = app
        .call(admin, Method::POST, "/v1/tenants/100/backups", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{op}");
    assert_eq!(op["kind"], "backup");
    let op_path = format!("/v1/operations/{}", op["id"].as_str().unwrap());
    app.wait_until(&op_path, |op| op["state"] == "succeeded")
        .await;

    let (status, page) = app
        .call(admin, Method::GET, "/v1/tenants/100/backups", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["next_cursor"], Value::Null);
    let backup = page["backups"][0].clone();
    assert_eq!(backup["state"], "completed", "{page}");
    assert_eq!(backup["kind"], "manual");
    assert_eq!(backup["created_by"], "admin-of-100");
    let id = backup["id"].as_str().unwrap();
    let (status, one) = app
        .call(
            admin,
            Method::GET,
            &format!("/v1/tenants/100/backups/{id}"),
            None,
        )
        .await;
    assert_eq!((status, &one), (StatusCode::OK, &backup));
    let (status, problem) = app
        .call(admin, Method::GET, "/v1/tenants/100/backups?limit=0", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

    // Another organization's admin, and another tenant's path, get nothing.
    let other = "tenant-admin-200";
    for (method, path) in [
        (Method::POST, "/v1/tenants/100/backups".to_owned()),
        (Method::GET, "/v1/tenants/100/backups".to_owned()),
        (Method::GET, format!("/v1/tenants/100/backups/{id}")),
        (
            Method::GET,
            format!("/v1/tenants/100/backups/{id}/download"),
        ),
    ] {
        let (status, _) = app.call(other, method.clone(), &path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    let (status, _) = app
        .call(
            DEV_TOKEN,
            Method::GET,
            &format!("/v1/tenants/200/backups/{id}/download"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The download is the pg_dump archive, which pg_restore reads.
    let response = app
        .http
        .get(format!(
            "{}/v1/tenants/100/backups/{id}/download",
            app.base()
        ))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(
        response.headers()["content-length"].to_str().unwrap(),
        backup["size_bytes"].to_string()
    );
    let archive = response.bytes().await.unwrap();
    assert!(archive.starts_with(b"PGDMP"));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &archive).unwrap();
    let listing = std::process::Command::new(
        tenancy_testkit::pg_bin_dir()
            .map(|dir| dir.join("pg_restore"))
            .unwrap_or_else(|| "pg_restore".into()),
    )
    .arg("--list")
    .arg(file.path())
    .output()
    .unwrap();
    assert!(listing.status.success());
    assert!(String::from_utf8_lossy(&listing.stdout).contains("TABLE DATA public members"));

    // Restores: the body is checked, another tenant's backup is not found, then it runs.
    for body in [
        json!({"backup_id": "nope"}),
        json!({"backup_id": id, "into": "x"}),
        json!({"backup_id": id, "into": {"name": "No Target"}}),
        json!({"backup_id": id, "into": {"org_id": "300"}}),
        json!({"backup_id": id, "into": null}),
    ] {
        let (status, problem) = app
            .call(admin, Method::POST, "/v1/tenants/100/restore", Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    }
    let (status, problem) = app
        .call(
            DEV_TOKEN,
            Method::POST,
            "/v1/tenants/200/restore",
            Some(json!({"backup_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    // A copy into a new tenant makes a tenant: platform admins only.
    let (status, _) = app
        .call(
            admin,
            Method::POST,
            "/v1/tenants/100/restore",
            Some(json!({"backup_id": id, "into": {"org_id": "300", "name": "Copy"}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, copy) = app
        .call(
            DEV_TOKEN,
            Method::POST,
            "/v1/tenants/100/restore",
            Some(json!({"backup_id": id, "into": {"org_id": "300", "name": "Copy"}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{copy}");
    assert_eq!(copy["kind"], "restore_copy");
    let copy_path = format!("/v1/operations/{}", copy["id"].as_str().unwrap());
    app.wait_until(&copy_path, |op| op["state"] == "succeeded")
        .await;
    let (_, copied) = app
        .call(DEV_TOKEN, Method::GET, "/v1/tenants/300", None)
        .await;
    assert_eq!(copied["status"], "active");
    let (status, problem) = app
        .call(
            DEV_TOKEN,
            Method::POST,
            "/v1/tenants/100/restore",
            Some(json!({"backup_id": id, "into": {"org_id": "100", "name": "Self"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["code"], "invalid_target");
    let (status, op) = app
        .call(
            admin,
            Method::POST,
            "/v1/tenants/100/restore",
            Some(json!({"backup_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{op}");
    let op_path = format!("/v1/operations/{}", op["id"].as_str().unwrap());
    app.wait_until(&op_path, |op| op["state"] == "succeeded")
        .await;
    let (_, audit) = app
        .call(DEV_TOKEN, Method::GET, "/v1/audit?org_id=100", None)
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["tenant.backup", "tenant.backup_download", "tenant.restore"] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
}
