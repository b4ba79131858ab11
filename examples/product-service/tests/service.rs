//! The example service end to end: registry and engine in-process, the ZITADEL stand-in, the
//! router, and callers of two organizations who each see only their own tickets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tenancy_client::RegistryClient;
use tenancy_registry::testing::{DEV_TOKEN, InProcessRegistry};
use tenancy_router::{RegistryResolver, RouterConfig, TenantRouter};
use tenancy_testkit::{TokenClaims, ZitadelStandIn, eventually};
use tenancy_zitadel::{Verifier, VerifierConfig, roles};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_organization_sees_only_its_own_tickets_and_a_suspended_one_is_refused() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let registry = InProcessRegistry::start().await.unwrap();
    let registry_url = registry.base.clone();
    let http = reqwest::Client::new();
    for (org, name) in [("100", "Example A"), ("200", "Example B")] {
        registry.onboard(org, name).await.unwrap();
    }

    let router = TenantRouter::new(
        Arc::new(RegistryResolver::new(&registry_url, DEV_TOKEN)),
        RouterConfig::default(),
    );
    let verifier = Arc::new(Verifier::new(VerifierConfig::new(
        &zitadel.issuer,
        zitadel.project_id(),
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            tenancy_example_product_service::app(router, verifier),
        )
        .await
    });

    let alice = zitadel.jwt(&TokenClaims::new("alice", "100", roles::TENANT_ADMIN));
    let bob = zitadel.jwt(&TokenClaims::new("bob", "200", "tenant_user"));
    let created = http
        .post(format!("{service}/tickets"))
        .bearer_auth(&alice)
        .json(&json!({"client": "Contoso", "title": "Printer on fire"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let list = |token: String| {
        let http = http.clone();
        let url = format!("{service}/tickets");
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let alices: Value = list(alice.clone()).await.json().await.unwrap();
    assert_eq!(alices[0]["title"], "Printer on fire");
    let bobs: Value = list(bob.clone()).await.json().await.unwrap();
    assert_eq!(
        bobs,
        json!([]),
        "another organization's database holds nothing of Alice's"
    );
    assert_eq!(
        http.get(format!("{service}/tickets"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Suspending organization 200 in the registry: Bob is refused within two seconds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    RegistryClient::new(registry_url.as_str(), DEV_TOKEN)
        .suspend(&"200".parse().unwrap())
        .await
        .unwrap();
    let refused = eventually(Duration::from_secs(2), "Bob is refused", || async {
        let response = list(bob.clone()).await;
        (response.status() == 403).then_some(response)
    })
    .await;
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "tenant_suspended");
    assert_eq!(
        list(alice).await.status(),
        200,
        "other tenants are unaffected"
    );
}

/// Agencies: an agency's user lists the tickets of all its clients and acts in one by naming it
/// (`X-Tenant-Id`); a client's user is refused on its sibling, and nobody names a tenant that is
/// not its agency's client, whether it exists or not. Tokens come from the ZITADEL stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_user_sees_its_clients_tickets_and_a_client_user_is_refused_on_a_sibling() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let registry = InProcessRegistry::start().await.unwrap();
    let http = reqwest::Client::new();
    for request in [
        json!({"org_id": "300", "name": "Agency", "kind": "agency"}),
        json!({"org_id": "301", "name": "Client One", "parent_org_id": "300"}),
        json!({"org_id": "302", "name": "Client Two", "parent_org_id": "300"}),
        json!({"org_id": "400", "name": "Other Agency", "kind": "agency"}),
        json!({"org_id": "401", "name": "Other Client", "parent_org_id": "400"}),
    ] {
        registry.create(&http, request).await.unwrap();
    }
    let router = TenantRouter::new(
        Arc::new(RegistryResolver::new(&registry.base, DEV_TOKEN)),
        RouterConfig::default(),
    );
    let verifier = Arc::new(Verifier::new(VerifierConfig::new(
        &zitadel.issuer,
        zitadel.project_id(),
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            tenancy_example_product_service::app(router, verifier),
        )
        .await
    });

    let agent = zitadel.jwt(&TokenClaims::new("agent", "300", "tenant_user"));
    let one = zitadel.jwt(&TokenClaims::new("carol", "301", "tenant_user"));
    let two = zitadel.jwt(&TokenClaims::new("dave", "302", "tenant_user"));
    let outsider = zitadel.jwt(&TokenClaims::new("erin", "400", "tenant_user"));
    let mut no_roles = TokenClaims::new("frank", "300", "tenant_user");
    no_roles.roles.clear();
    let roleless = zitadel.jwt(&no_roles);
    let call = |method: reqwest::Method, path: &str, token: &str, tenant: Option<&str>| {
        let mut request = http
            .request(method, format!("{service}{path}"))
            .bearer_auth(token);
        if let Some(tenant) = tenant {
            request = request.header("X-Tenant-Id", tenant);
        }
        request
    };

    // Each client's own user opens a ticket in its own database.
    for (token, title) in [(&one, "One's printer"), (&two, "Two's VPN")] {
        let created = call(reqwest::Method::POST, "/tickets", token, None)
            .json(&json!({"client": "HQ", "title": title}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    // The agent, acting in client one, opens a ticket there.
    let created = call(reqwest::Method::POST, "/tickets", &agent, Some("301"))
        .json(&json!({"client": "HQ", "title": "Opened by the agency"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let whoami: Value = call(reqwest::Method::GET, "/whoami", &agent, Some("301"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &whoami["org_id"],
            &whoami["kind"],
            &whoami["parent_org_id"],
            &whoami["via_agency"]
        ),
        (
            &json!("301"),
            &json!("client"),
            &json!("300"),
            &json!("300")
        )
    );

    // The agency view: both clients' tickets, each tagged with its client.
    let view = call(reqwest::Method::GET, "/agency/tickets", &agent, None)
        .send()
        .await
        .unwrap();
    assert_eq!(view.status(), 200);
    let view: Value = view.json().await.unwrap();
    let mut seen: Vec<(String, String)> = view
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["org_id"].as_str().unwrap().to_owned(),
                t["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("301".into(), "One's printer".into()),
            ("301".into(), "Opened by the agency".into()),
            ("302".into(), "Two's VPN".into()),
        ]
    );
    // Client two's user sees only its own.
    let own: Value = call(reqwest::Method::GET, "/tickets", &two, None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own.as_array().unwrap().len(), 1);

    // Refused: a client user on its sibling, an agency on another agency's client or on a
    // tenant that does not exist (the same answer), a client user on the agency view, and a
    // header that is not an organization id.
    for (token, path, tenant, status) in [
        (&two, "/tickets", Some("301"), 403),
        (&two, "/tickets", Some("300"), 403),
        (&agent, "/tickets", Some("401"), 403),
        (&agent, "/tickets", Some("999999"), 403),
        (&outsider, "/tickets", Some("301"), 403),
        (&one, "/agency/tickets", None, 403),
        (&agent, "/agency/tickets", Some("301"), 403),
        // An agency's user without a role: neither the agency view nor a client.
        (&roleless, "/agency/tickets", None, 403),
        (&roleless, "/tickets", Some("301"), 403),
        (&agent, "/tickets", Some("30 1"), 400),
    ] {
        let response = call(reqwest::Method::GET, path, token, tenant)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path} as {tenant:?}");
    }

    // The agency suspended, and client one resumed by a platform admin: the client's own user
    // works there, the agency's user no longer does (security review 2, N1).
    let platform = RegistryClient::new(registry.base.as_str(), DEV_TOKEN);
    platform.suspend(&"300".parse().unwrap()).await.unwrap();
    eventually(Duration::from_secs(30), "client one resumed", || async {
        platform.resume(&"301".parse().unwrap()).await.ok()
    })
    .await;
    eventually(Duration::from_secs(30), "client one active", || async {
        let tenant = platform.tenant(&"301".parse().unwrap()).await.unwrap();
        (tenant.status == tenancy_core::TenantStatus::Active).then_some(())
    })
    .await;
    let refused = eventually(Duration::from_secs(2), "the agent is refused", || async {
        let response = call(reqwest::Method::GET, "/tickets", &agent, Some("301"))
            .send()
            .await
            .unwrap();
        (response.status() == 403).then_some(response)
    })
    .await;
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("is suspended"),
        "{problem}"
    );
    let own = call(reqwest::Method::GET, "/tickets", &one, None)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
}
