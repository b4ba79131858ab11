//! The example service end to end: registry and engine in-process, the ZITADEL stand-in, the
//! router, and callers of two organizations who each see only their own tickets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tenancy_e2e::in_process::{DEV_TOKEN, InProcessRegistry};
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
    http.post(format!("{registry_url}/v1/tenants/200/suspend"))
        .bearer_auth(DEV_TOKEN)
        .send()
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
