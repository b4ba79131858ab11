use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::Deployment;

#[tokio::test]
async fn the_whole_tenant_lifecycle_over_http() {
    let deployment = Deployment::new().unwrap();
    let registry = deployment
        .start_with_env(&[("TENANCY_METRICS_INTERVAL", "100ms")])
        .await
        .unwrap();
    let acme = json!({"org_id": "263014839178313731", "name": "Acme Corp", "tier": "professional"});

    // Onboard and wait: 201 with the active tenant.
    let created = registry
        .call(Method::POST, "/v1/tenants?wait=30s", Some(acme.clone()))
        .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "{created:?}\n{}",
        deployment.log()
    );
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["db_name"], "tenant_acme_corp");
    assert_eq!(
        created.body["schema_version"],
        tenancy_control::migrate::latest_template_version()
    );

    // The same request again: 200, nothing new. A different one: 409.
    let again = registry.call(Method::POST, "/v1/tenants", Some(acme)).await;
    assert_eq!(again.status, StatusCode::OK);
    let other = json!({"org_id": "263014839178313731", "name": "Acme Corp", "tier": "business"});
    let conflict = registry
        .call(Method::POST, "/v1/tenants", Some(other))
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.body["code"], "tenant_exists");
    assert_eq!(conflict.content_type, "application/problem+json");

    // Without wait: 202 with the operation, followed to the end.
    let globex = registry
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"org_id": "42", "name": "Globex"})),
        )
        .await;
    assert_eq!(globex.status, StatusCode::ACCEPTED);
    let op_path = format!("/v1/operations/{}", globex.body["id"].as_str().unwrap());
    registry.wait_for(&op_path, "state", "succeeded").await;

    // Listing: filters and pages.
    let page = registry
        .call(Method::GET, "/v1/tenants?limit=1", None)
        .await;
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let page2 = registry
        .call(
            Method::GET,
            &format!("/v1/tenants?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(page2.body["items"].as_array().unwrap().len(), 1);
    assert!(page2.body["next_cursor"].is_null());
    assert_ne!(
        page.body["items"][0]["org_id"],
        page2.body["items"][0]["org_id"]
    );
    let standard = registry
        .call(Method::GET, "/v1/tenants?tier=professional", None)
        .await;
    assert_eq!(standard.body["items"].as_array().unwrap().len(), 1);

    // Connection info, usage, health.
    let conn = registry
        .call(Method::GET, "/v1/tenants/42/connection", None)
        .await;
    assert_eq!(conn.status, StatusCode::OK);
    assert_eq!(conn.body["dbname"], "tenant_globex");
    assert_eq!(conn.body["pool_size"], 2);
    assert!(conn.body["password"].as_str().is_some_and(|p| p.len() > 20));
    let usage = registry
        .call(Method::GET, "/v1/tenants/42/usage", None)
        .await;
    assert!(
        usage.body["size_bytes"].as_i64().unwrap() > 1_000_000,
        "{usage:?}"
    );
    let health = registry
        .call(Method::GET, "/v1/tenants/42/health", None)
        .await;
    assert_eq!(health.body["database_exists"], true);
    assert_eq!(
        health.body["schema_version"],
        health.body["template_version"]
    );

    // Re-tier: the role gets the new connection limit.
    let patched = registry
        .call(
            Method::PATCH,
            "/v1/tenants/42",
            Some(json!({"tier": "business", "name": "Globex Inc"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    assert_eq!(patched.body["tier"], "business");
    let ops = registry
        .call(Method::GET, "/v1/tenants/42/operations", None)
        .await;
    let retier = ops
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["kind"] == "retier")
        .unwrap()
        .clone();
    // The answer names the operation that applies the new tier.
    assert_eq!(
        patched.location,
        Some(format!("/v1/operations/{}", retier["id"].as_str().unwrap()))
    );
    registry
        .wait_for(
            &format!("/v1/operations/{}", retier["id"].as_str().unwrap()),
            "state",
            "succeeded",
        )
        .await;
    assert_eq!(
        deployment
            .fleet
            .cluster("pg-1")
            .psql(
                "postgres",
                "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'tenant_globex'"
            )
            .unwrap(),
        "60"
    );

    // The change feed shows what happened, in order.
    let feed = registry
        .call(Method::GET, "/v1/changes?after=0&wait=1s", None)
        .await;
    let seqs: Vec<i64> = feed.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let last = feed.body["last_seq"].as_i64().unwrap();

    // Suspend, resume, delete, purge.
    for (action, status) in [("suspend", "suspended"), ("resume", "active")] {
        let op = registry
            .call(Method::POST, &format!("/v1/tenants/42/{action}"), None)
            .await;
        assert_eq!(op.status, StatusCode::ACCEPTED, "{action}: {op:?}");
        registry
            .wait_for(
                &format!("/v1/operations/{}", op.body["id"].as_str().unwrap()),
                "state",
                "succeeded",
            )
            .await;
        registry.wait_for("/v1/tenants/42", "status", status).await;
    }
    let feed = registry
        .call(
            Method::GET,
            &format!("/v1/changes?after={last}&wait=5s"),
            None,
        )
        .await;
    let statuses: Vec<&str> = feed.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["active"],
        "only the latest state of each tenant is listed"
    );
    let deleted = registry.call(Method::DELETE, "/v1/tenants/42", None).await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    registry
        .wait_for("/v1/tenants/42", "status", "deleted")
        .await;
    assert!(
        deployment
            .tenant_databases()
            .contains(&"tenant_globex".to_owned()),
        "kept for retention"
    );
    let purged = registry
        .call(Method::POST, "/v1/tenants/42/purge", None)
        .await;
    registry
        .wait_for(
            &format!("/v1/operations/{}", purged.body["id"].as_str().unwrap()),
            "state",
            "succeeded",
        )
        .await;
    assert_eq!(
        registry
            .call(Method::GET, "/v1/tenants/42", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(deployment.tenant_databases(), ["tenant_acme_corp"]);

    // Every privileged action is in the audit log, with who did it.
    let audit = registry
        .call(Method::GET, "/v1/audit?org_id=42&limit=100", None)
        .await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "tenant.create",
        "tenant.update",
        "tenant.suspend",
        "tenant.resume",
        "tenant.deprovision",
        "tenant.purge",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    assert!(
        audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor_subject"] == "dev" && e["request_id"].is_string())
    );

    // Servers: listed, drained.
    let servers = registry.call(Method::GET, "/v1/servers", None).await;
    assert_eq!(servers.body[0]["id"], "pg-1");
    assert_eq!(
        servers.body[0]["template_version"],
        tenancy_control::migrate::latest_template_version()
    );
    let drained = registry
        .call(Method::POST, "/v1/servers/pg-1/drain", None)
        .await;
    assert_eq!(drained.body["state"], "draining");

    // Metrics (the registry's gauges are refreshed on a timer).
    let metrics = tenancy_testkit::eventually(
        std::time::Duration::from_secs(10),
        "the gauges show the active tenant",
        || async {
            let text = reqwest::get(format!("{}/metrics", registry.base))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains("tenancy_tenants{status=\"active\"} 1")
                .then_some(text)
        },
    )
    .await;
    for name in [
        "http_request_duration_seconds",
        "tenancy_step_duration_seconds",
        "tenancy_operations_total",
        "tenancy_store_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
    }
    // Two tenants provisioned (Acme's repeated request made no second one), no pool: two misses.
    assert!(
        metrics.contains("tenancy_warm_pool_claims_total{path=\"cold\"} 2"),
        "{metrics}"
    );
}
