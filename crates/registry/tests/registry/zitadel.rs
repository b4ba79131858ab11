//! The registry with ZITADEL's management API (the stand-in): admin activation through an
//! outage, organization creation, and the organization sync repairing missed events.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tenancy_registry::Settings;
use tenancy_testkit::{PLATFORM_ORG_ID, TokenClaims, ZITADEL_PAT, ZitadelStandIn};
use tenancy_zitadel::roles;

use crate::common::{TestApp, Webhook, dev_settings};

/// ZITADEL for tokens and for the management API (PAT or key file); no development token (it
/// is refused beside ZITADEL).
fn zitadel_settings(zitadel: &ZitadelStandIn, key_file: Option<&std::path::Path>) -> Settings {
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap());
    settings.zitadel.issuer = Some(zitadel.issuer.clone());
    settings.zitadel.project_id = Some(zitadel.project_id().into());
    settings.zitadel.platform_org_id = Some(PLATFORM_ORG_ID.parse().unwrap());
    match key_file {
        Some(path) => settings.zitadel.service_account_key_file = Some(path.into()),
        None => settings.zitadel.service_account_pat = Some(SecretString::from(ZITADEL_PAT)),
    }
    // Tests run the sync by hand unless they say otherwise.
    settings.zitadel.org_sync_interval = Duration::ZERO;
    settings
}

/// The registry with these settings, called as a platform admin of the stand-in (or with the
/// development token when ZITADEL is off).
async fn start(settings: Settings, zitadel: Option<&ZitadelStandIn>) -> TestApp {
    let mut app = TestApp::start_with(settings, Vec::new(), |config| {
        config.engine.backoff_base = Duration::from_millis(100);
        config.engine.backoff_max = Duration::from_millis(400);
    })
    .await;
    if let Some(zitadel) = zitadel {
        app.admin = zitadel.jwt(&TokenClaims::platform("ops", roles::PLATFORM_ADMIN));
    }
    app
}

/// Onboards `org` with jane@acme.example as its first admin; the tenant once active.
async fn onboard_with_admin(app: &TestApp, org: &str) -> Value {
    let request = json!({"org_id": org, "name": "Acme Corp", "admin_email": "jane@acme.example"});
    let (status, tenant) = app
        .admin_call(Method::POST, "/v1/tenants?wait=30s", Some(request))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    tenant
}

/// Suspends the tenant (an operator's suspension) and waits until the operation succeeded.
async fn suspend(app: &TestApp, org: &str) {
    let (status, body) = app
        .admin_call(Method::POST, &format!("/v1/tenants/{org}/suspend"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_until(&format!("/v1/tenants/{org}/operations"), |ops| {
        ops[0]["kind"] == "suspend" && ops[0]["state"] == "succeeded"
    })
    .await;
}

/// The tenant's admin activation operation, once `check` accepts it.
async fn activation(app: &TestApp, org_id: &str, check: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/v1/tenants/{org_id}/operations");
    let ops = app
        .wait_until(&path, |ops| {
            ops.as_array()
                .into_iter()
                .flatten()
                .any(|op| op["kind"] == "activate_admin" && check(op))
        })
        .await;
    ops.as_array()
        .unwrap()
        .iter()
        .find(|op| op["kind"] == "activate_admin")
        .unwrap()
        .clone()
}

#[tokio::test]
async fn admin_activation_waits_out_a_zitadel_outage_and_never_holds_back_the_database() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let app = start(zitadel_settings(&zitadel, None), Some(&zitadel)).await;
    let org = zitadel.add_organization("Acme Corp");
    zitadel.set_outage(true);

    let tenant = onboard_with_admin(&app, &org).await;
    assert_eq!(
        tenant["status"], "active",
        "the database is ready despite the outage"
    );

    // The activation retries with backoff, and its error says why.
    let failing = activation(&app, &org, |op| op["attempts"].as_i64() >= Some(2)).await;
    assert_ne!(failing["state"], "succeeded");
    assert!(
        failing["last_error"].as_str().unwrap().contains("503"),
        "{failing}"
    );
    // An attempt is counted when it is claimed, a moment before it calls ZITADEL.
    tenancy_testkit::eventually(
        std::time::Duration::from_secs(10),
        "two calls refused in the outage",
        || async { (zitadel.refused_in_outage() >= 2).then_some(()) },
    )
    .await;
    assert!(zitadel.user(&org, "jane@acme.example").is_none());

    // A pending activation does not block the tenant's lifecycle.
    suspend(&app, &org).await;
    let (status, _) = app
        .admin_call(Method::POST, &format!("/v1/tenants/{org}/resume"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.wait_status(&org, "active").await;

    // ZITADEL is back: the admin exists once, is invited, and holds tenant_admin.
    zitadel.set_outage(false);
    activation(&app, &org, |op| op["state"] == "succeeded").await;
    let admin = zitadel.user(&org, "jane@acme.example").unwrap();
    assert!(admin.invited);
    assert_eq!(admin.roles, vec![roles::TENANT_ADMIN.to_owned()]);
    let (_, tenant) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{org}"), None)
        .await;
    assert_eq!(tenant["status"], "active");
}

#[tokio::test]
async fn a_refused_activation_fails_at_once_and_can_be_retried_later() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let app = start(zitadel_settings(&zitadel, None), Some(&zitadel)).await;
    let org = zitadel.add_organization("Acme Corp");
    // The service account lacks a permission: retrying will not help until someone fixes it.
    zitadel.fail_with(Some(403));
    onboard_with_admin(&app, &org).await;
    let failed = activation(&app, &org, |op| op["state"] == "failed").await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(failed["last_error"].as_str().unwrap().contains("403"));

    // Later work on the tenant does not hide the failed activation from a retry.
    suspend(&app, &org).await;
    zitadel.fail_with(None);
    let (status, retried) = app
        .admin_call(Method::POST, &format!("/v1/tenants/{org}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{retried}");
    assert_eq!(retried["kind"], "activate_admin");
    activation(&app, &org, |op| op["state"] == "succeeded").await;
    assert!(zitadel.user(&org, "jane@acme.example").unwrap().invited);
}

#[tokio::test]
async fn admin_email_without_zitadel_is_refused_up_front() {
    let app = start(dev_settings(), None).await;
    let (status, body) = app
        .admin_call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"org_id": "100", "name": "Acme", "admin_email": "jane@acme.example"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "zitadel_not_configured");
    assert!(body["detail"].as_str().unwrap().contains("ZITADEL"));
    let (status, body) = app
        .admin_call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"name": "Acme", "create_org": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "zitadel_not_configured");
    let (status, _) = app.admin_call(Method::GET, "/v1/tenants/100", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn create_org_creates_the_organization_once_then_onboards_it() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("service-account.json");
    std::fs::write(&key_file, zitadel.service_account_key()).unwrap();
    let app = start(zitadel_settings(&zitadel, Some(&key_file)), Some(&zitadel)).await;
    let request = json!({"name": "Globex", "region": "local", "create_org": {
        "admin": {"email": "hank@globex.example", "given_name": "Hank", "family_name": "Scorpio"}}});

    let (status, tenant) = app
        .admin_call(Method::POST, "/v1/tenants?wait=30s", Some(request.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let org_id = tenant["org_id"].as_str().unwrap().to_owned();
    assert_eq!(zitadel.organization(&org_id).unwrap().name, "Globex");

    // The same request again (a client retrying after a timeout): no second organization.
    let (status, again) = app
        .admin_call(Method::POST, "/v1/tenants", Some(request))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["org_id"], org_id.as_str());
    assert_eq!(zitadel.organizations().len(), 1);

    // The admin was made with the organization, then invited and granted tenant_admin.
    activation(&app, &org_id, |op| op["state"] == "succeeded").await;
    let admin = zitadel.user(&org_id, "hank@globex.example").unwrap();
    assert_eq!(
        (admin.given_name.as_str(), admin.family_name.as_str()),
        ("Hank", "Scorpio")
    );
    assert!(admin.invited);
    assert_eq!(admin.roles, vec![roles::TENANT_ADMIN.to_owned()]);

    // A name that an organization the registry did not create holds: a conflict.
    zitadel.add_organization("Initech");
    let (status, body) = app
        .admin_call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"name": "Initech", "create_org": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "organization_exists");

    // A request that cannot be onboarded creates nothing in ZITADEL.
    let (status, _) = app
        .admin_call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"name": "Nowhere", "region": "mars", "create_org": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(zitadel.organizations().len(), 2);
}

#[tokio::test]
async fn the_sync_repairs_missed_organization_events() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let platform_org = zitadel.add_organization("Platform");
    let mut settings = zitadel_settings(&zitadel, None);
    settings.zitadel.ignore_orgs = vec![platform_org.parse().unwrap()];
    settings.zitadel.org_sync_interval = Duration::from_millis(300);
    settings.zitadel.org_sync_max_deletes = 1;
    let app = start(settings, Some(&zitadel)).await;

    // An organization added while the webhook was down: the periodic sync onboards it.
    let added = zitadel.add_organization("Missed Event Inc");
    let tenant = app.wait_status(&added, "active").await;
    assert_eq!(tenant["name"], "Missed Event Inc");

    // Deactivated -> suspended; reactivated -> resumed.
    zitadel.set_organization_active(&added, false);
    app.wait_status(&added, "suspended").await;
    zitadel.set_organization_active(&added, true);
    app.wait_status(&added, "active").await;

    // An operator's suspension is not undone by the sync.
    suspend(&app, &added).await;
    let report = sync(&app).await;
    assert_eq!(report["resumed"], json!([]), "{report}");
    let (_, tenant) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{added}"), None)
        .await;
    assert_eq!(tenant["status"], "suspended");

    // One organization ZITADEL allows but a tenant name does not (too long, or blank) stops
    // nothing: the long name is shortened, the blank one reported, the others go on.
    let long = zitadel.add_organization(&"Very Long Name ".repeat(20));
    let blank = zitadel.add_organization("   ");
    let after = zitadel.add_organization("After The Odd Ones");
    let report = sync(&app).await;
    assert!(
        report["failed"].as_array().unwrap().contains(&json!(blank)),
        "{report}"
    );
    let tenant = app.wait_status(&long, "active").await;
    let name = tenant["name"].as_str().unwrap();
    assert!(
        name.starts_with("Very Long Name") && name.chars().count() <= 128,
        "{name}"
    );
    app.wait_status(&after, "active").await;

    // Renamed in ZITADEL -> renamed here; removed -> deleted.
    let second = zitadel.add_organization("Second Org");
    app.wait_status(&second, "active").await;
    zitadel.rename_organization(&second, "Second Org, Renamed");
    app.wait_until(&format!("/v1/tenants/{second}"), |t| {
        t["name"] == "Second Org, Renamed"
    })
    .await;
    zitadel.remove_organization(&second);
    app.wait_status(&second, "deleted").await;

    // More removals than allowed in one run: none is applied.
    let third = zitadel.add_organization("Third Org");
    app.wait_status(&third, "active").await;
    zitadel.remove_organizations(&[&added, &third]);
    let report = sync(&app).await;
    let mut refused: Vec<&str> = report["deletions_refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    refused.sort();
    let mut expected = vec![added.as_str(), third.as_str()];
    expected.sort();
    assert_eq!(refused, expected, "{report}");
    let (_, tenant) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{third}"), None)
        .await;
    assert_eq!(tenant["status"], "active");

    // The platform's own organization never became a tenant.
    let (status, _) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{platform_org}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Runs a sync now and returns its report. The periodic sync may hold the sync's lock at that
/// moment (409 `sync_running`): asked again until it is free.
async fn sync(app: &TestApp) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, report) = app.admin_call(Method::POST, "/v1/zitadel/sync", None).await;
        if status == StatusCode::CONFLICT
            && report["code"] == "sync_running"
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{report}");
        return report;
    }
}

/// Agencies in ZITADEL: `create_org` writes an organization's place to its metadata; with
/// placement from metadata on, a new organization marked as an agency's client is onboarded
/// under it, by its event and by the sync, and a mark that names no agency onboards nothing.
#[tokio::test]
async fn organizations_marked_as_an_agencys_clients_are_placed_under_it() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let mut settings = zitadel_settings(&zitadel, None);
    settings.zitadel.placement_metadata = true;
    settings.zitadel.webhook_keys = Some(SecretString::from("signing-key"));
    let app = start(settings, Some(&zitadel)).await;

    // The registry creates an agency and a client of it: ZITADEL's metadata says so too.
    let (status, agency) = app
        .admin_call(
            Method::POST,
            "/v1/tenants?wait=30s",
            Some(json!({"name": "Agency Org", "kind": "agency", "create_org": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{agency}");
    let agency_id = agency["org_id"].as_str().unwrap().to_owned();
    assert_eq!(
        zitadel.organization(&agency_id).unwrap().metadata["tenancy.kind"],
        "agency"
    );
    let (status, client) = app
        .admin_call(
            Method::POST,
            "/v1/tenants?wait=30s",
            Some(json!({"name": "Client Org", "parent_org_id": agency_id, "create_org": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let client_id = client["org_id"].as_str().unwrap();
    assert_eq!(
        zitadel.organization(client_id).unwrap().metadata["tenancy.agency"],
        agency_id
    );

    // Made in the console and marked there: the sync places it under the agency.
    let synced = zitadel.add_organization("Console Client");
    zitadel.set_organization_metadata(&synced, "tenancy.agency", &agency_id);
    let wrong = zitadel.add_organization("Marked Wrongly");
    zitadel.set_organization_metadata(&wrong, "tenancy.agency", "not an id");
    let report = sync(&app).await;
    assert!(
        report["failed"].as_array().unwrap().contains(&json!(wrong)),
        "{report}"
    );
    let tenant = app.wait_status(&synced, "active").await;
    assert_eq!(
        (&tenant["kind"], &tenant["parent_org_id"]),
        (&json!("client"), &json!(agency_id))
    );
    let (status, _) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{wrong}"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an unreadable mark is no standalone tenant"
    );

    // Made and marked, then announced by its event: placed under the agency too.
    let announced = zitadel.add_organization("Announced Client");
    zitadel.set_organization_metadata(&announced, "tenancy.agency", &agency_id);
    let hook = Webhook {
        app: &app,
        key: "signing-key",
    };
    assert_eq!(
        hook.deliver(&announced, "org.added", 1, "Announced Client")
            .await,
        StatusCode::OK
    );
    let tenant = app.wait_status(&announced, "active").await;
    assert_eq!(tenant["parent_org_id"], json!(agency_id));
    let (_, clients) = app
        .admin_call(
            Method::GET,
            &format!("/v1/tenants/{agency_id}/clients"),
            None,
        )
        .await;
    assert_eq!(clients["items"].as_array().unwrap().len(), 3, "{clients}");
}

/// The hierarchy's authorization matrix with the stand-in's own tokens (verified through its
/// JWKS, as with a real provider): an agency's tenant_admin reads its clients and suspends or
/// resumes them, but does not create, delete, re-tier or read their connection or settings,
/// and sees nothing of another agency's clients; a client's admin sees only its own tenant.
#[tokio::test]
async fn the_hierarchy_authorizes_stand_in_tokens_of_agency_and_client_admins() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let app = start(zitadel_settings(&zitadel, None), Some(&zitadel)).await;
    for request in [
        json!({"org_id": "700", "name": "Agency A", "kind": "agency"}),
        json!({"org_id": "701", "name": "Client A1", "parent_org_id": "700"}),
        json!({"org_id": "702", "name": "Client A2", "parent_org_id": "700"}),
        json!({"org_id": "800", "name": "Agency B", "kind": "agency"}),
        json!({"org_id": "801", "name": "Client B1", "parent_org_id": "800"}),
    ] {
        let (status, body) = app
            .admin_call(Method::POST, "/v1/tenants?wait=30s", Some(request))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let agency_admin = zitadel.jwt(&TokenClaims::new("ann", "700", roles::TENANT_ADMIN));
    let client_admin = zitadel.jwt(&TokenClaims::new("carl", "701", roles::TENANT_ADMIN));

    let get = Method::GET;
    let post = Method::POST;
    let allowed = StatusCode::OK;
    let forbidden = StatusCode::FORBIDDEN;
    let matrix: Vec<(&str, Method, &str, Option<Value>, StatusCode)> = vec![
        // The agency's admin on its own clients: reads.
        (&agency_admin, get.clone(), "/v1/tenants/701", None, allowed),
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/701/operations",
            None,
            allowed,
        ),
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/701/usage",
            None,
            allowed,
        ),
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/701/quotas",
            None,
            allowed,
        ),
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/701/health",
            None,
            allowed,
        ),
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/700/clients",
            None,
            allowed,
        ),
        // ... but not secrets, settings or changes of the tenant's life.
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/701/connection",
            None,
            forbidden,
        ),
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/701/settings",
            None,
            forbidden,
        ),
        (
            &agency_admin,
            Method::DELETE,
            "/v1/tenants/701",
            None,
            forbidden,
        ),
        (
            &agency_admin,
            Method::PATCH,
            "/v1/tenants/701",
            Some(json!({"tier": "business"})),
            forbidden,
        ),
        (
            &agency_admin,
            post.clone(),
            "/v1/tenants",
            Some(json!({"org_id": "703", "name": "A3", "parent_org_id": "700"})),
            forbidden,
        ),
        // Another agency's client: nothing.
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/801",
            None,
            forbidden,
        ),
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/801/operations",
            None,
            forbidden,
        ),
        (
            &agency_admin,
            post.clone(),
            "/v1/tenants/801/suspend",
            None,
            forbidden,
        ),
        (
            &agency_admin,
            get.clone(),
            "/v1/tenants/800/clients",
            None,
            forbidden,
        ),
        // A client's admin: its own tenant only; not its sibling, not its agency's list.
        (&client_admin, get.clone(), "/v1/tenants/701", None, allowed),
        (
            &client_admin,
            get.clone(),
            "/v1/tenants/702",
            None,
            forbidden,
        ),
        (
            &client_admin,
            get.clone(),
            "/v1/tenants/702/usage",
            None,
            forbidden,
        ),
        (
            &client_admin,
            post.clone(),
            "/v1/tenants/702/suspend",
            None,
            forbidden,
        ),
        (
            &client_admin,
            get.clone(),
            "/v1/tenants/700/clients",
            None,
            forbidden,
        ),
    ];
    for (token, method, path, body, expected) in matrix {
        let (status, answer) = app.call(token, method.clone(), path, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }

    // Suspend and resume a client of one's own agency.
    let (status, body) = app
        .call(&agency_admin, post.clone(), "/v1/tenants/702/suspend", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_until(
        &format!("/v1/operations/{}", body["id"].as_str().unwrap()),
        |op| op["state"] == "succeeded",
    )
    .await;
    let (status, body) = app
        .call(&agency_admin, post, "/v1/tenants/702/resume", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_status("702", "active").await;
}

/// Which organizations are onboarded without a request (first security review, L3): with
/// `--zitadel-auto-onboard marked`, only those whose metadata `tenancy.onboard` is `true`, by the
/// sync and by their event; the others are reported and left alone until marked.
#[tokio::test]
async fn only_organizations_marked_for_onboarding_get_a_database() {
    use tenancy_registry::settings::AutoOnboard;

    let zitadel = ZitadelStandIn::start().await.unwrap();
    let mut settings = zitadel_settings(&zitadel, None);
    settings.zitadel.auto_onboard = AutoOnboard::Marked;
    settings.zitadel.webhook_keys = Some(SecretString::from("signing-key"));
    let app = start(settings, Some(&zitadel)).await;

    let unmarked = zitadel.add_organization("Signed Up Alone");
    let approved = zitadel.add_organization("Approved Customer");
    zitadel.set_organization_metadata(&approved, "tenancy.onboard", "true");
    let report = sync(&app).await;
    assert!(
        report["not_approved"]
            .as_array()
            .unwrap()
            .contains(&json!(unmarked)),
        "{report}"
    );
    app.wait_status(&approved, "active").await;
    let (status, _) = app
        .admin_call(Method::GET, &format!("/v1/tenants/{unmarked}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not approved: no database");

    // Approved later: the next sync onboards it.
    zitadel.set_organization_metadata(&unmarked, "tenancy.onboard", "true");
    sync(&app).await;
    app.wait_status(&unmarked, "active").await;

    // Marked when announced: its event onboards it.
    let announced = zitadel.add_organization("Announced Approved");
    zitadel.set_organization_metadata(&announced, "tenancy.onboard", "true");
    let hook = Webhook {
        app: &app,
        key: "signing-key",
    };
    assert_eq!(
        hook.deliver(&announced, "org.added", 1, "Announced Approved")
            .await,
        StatusCode::OK
    );
    app.wait_status(&announced, "active").await;
}
