use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use tenancy_e2e::Deployment;

/// Every route of the API is in the document, and every route in the document exists.
#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let deployment = Deployment::new().unwrap();
    let registry = deployment.start().await.unwrap();
    let doc = registry
        .call_as(None, Method::GET, "/openapi.json", None)
        .await;
    assert_eq!(doc.status, StatusCode::OK);

    let mut documented = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let expected: BTreeSet<String> = [
        "POST /v1/tenants",
        "GET /v1/tenants",
        "GET /v1/tenants/{org_id}",
        "PATCH /v1/tenants/{org_id}",
        "DELETE /v1/tenants/{org_id}",
        "POST /v1/tenants/{org_id}/suspend",
        "POST /v1/tenants/{org_id}/resume",
        "POST /v1/tenants/{org_id}/retry",
        "POST /v1/tenants/{org_id}/purge",
        "POST /v1/tenants/{org_id}/rotate-credentials",
        "GET /v1/tenants/{org_id}/operations",
        "GET /v1/tenants/{org_id}/clients",
        "POST /v1/tenants/{org_id}/move-to-agency",
        "POST /v1/tenants/{org_id}/move",
        "POST /v1/tenants/{org_id}/move/cancel",
        "GET /v1/tenants/{org_id}/moves",
        "POST /v1/tenants/{org_id}/backups",
        "GET /v1/tenants/{org_id}/backups",
        "GET /v1/tenants/{org_id}/backups/{backup_id}",
        "GET /v1/tenants/{org_id}/backups/{backup_id}/download",
        "POST /v1/tenants/{org_id}/restore",
        "GET /v1/tenants/{org_id}/restore-window",
        "GET /v1/tenants/{org_id}/connection",
        "GET /v1/tenants/{org_id}/usage",
        "GET /v1/tenants/{org_id}/health",
        "POST /v1/tenants/{org_id}/usage/{resource}",
        "GET /v1/tenants/{org_id}/quotas",
        "POST /v1/tenants/{org_id}/quotas/check",
        "GET /v1/tenants/{org_id}/usage-log",
        "GET /v1/tenants/{org_id}/settings",
        "GET /v1/tenants/{org_id}/settings/{key}",
        "PUT /v1/tenants/{org_id}/settings/{key}",
        "DELETE /v1/tenants/{org_id}/settings/{key}",
        "GET /v1/tenants/{org_id}/features",
        "GET /v1/operations/{id}",
        "GET /v1/changes",
        "GET /v1/servers",
        "POST /v1/servers",
        "DELETE /v1/servers/{id}",
        "POST /v1/servers/{id}/drain",
        "POST /v1/servers/{id}/activate",
        "GET /v1/audit",
        "POST /v1/zitadel/events",
        "POST /v1/zitadel/sync",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(documented, expected);
    // The tiers are the configuration's, listed so a client knows them.
    assert_eq!(
        doc.body["components"]["schemas"]["Tier"]["enum"],
        serde_json::json!(["business", "enterprise", "free", "msp", "professional"])
    );

    // Each documented route is served (it asks for credentials rather than answering 404/405).
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path
            .replace("{org_id}", "1")
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{backup_id}", "00000000-0000-0000-0000-000000000000");
        let answer = registry
            .call_as(None, method.parse().unwrap(), &path, None)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{route}");
    }
    assert!(doc.body["components"]["schemas"]["Tenant"].is_object());
    assert!(doc.body["components"]["schemas"]["Problem"].is_object());
}
