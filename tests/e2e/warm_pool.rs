//! The warm pool against two registry processes at once: 50 sign-ups racing over 10 spares get
//! 50 databases, each spare claimed once, the rest cloned; both report the same spares.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::{Deployment, Registry};
use tenancy_testkit::eventually;

async fn spares(registry: &Registry) -> i64 {
    registry.call(Method::GET, "/v1/servers", None).await.body[0]["spares"]
        .as_i64()
        .unwrap()
}

/// Waits until the replica's `/metrics` shows `line` (its gauges are read on a timer).
async fn metrics_show(registry: &Registry, line: &str) {
    eventually(
        Duration::from_secs(10),
        format!("/metrics shows {line}"),
        || async {
            let text = reqwest::get(format!("{}/metrics", registry.base))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.lines().any(|l| l == line).then_some(())
        },
    )
    .await;
}

/// The spares gauge of the deployment's one server at its template version.
async fn spares_gauge(registry: &Registry, spares: i64) -> String {
    let server = &registry.call(Method::GET, "/v1/servers", None).await.body[0];
    format!(
        "tenancy_warm_pool_spares{{server=\"{}\",template_version=\"{}\"}} {spares}",
        server["id"].as_str().unwrap(),
        server["template_version"]
    )
}

#[tokio::test]
async fn fifty_signups_racing_on_two_replicas_claim_each_of_ten_spares_once() {
    let deployment = Deployment::new().unwrap();
    // Each replica refills once at start (one of them under the server's lock), then not for an
    // hour: the race sees exactly the 10 spares there at its start.
    let env = [
        ("TENANCY_WARM_POOL__SIZE", "10"),
        ("TENANCY_WARM_POOL__REFILL_INTERVAL", "1h"),
        ("TENANCY_METRICS_INTERVAL", "100ms"),
    ];
    let replicas = [
        deployment.start_with_env(&env).await.unwrap(),
        deployment.start_with_env(&env).await.unwrap(),
    ];
    eventually(Duration::from_secs(60), "the pool is full", || async {
        (spares(&replicas[0]).await == 10).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(spares(&replicas[1]).await, 10);
    // One replica made them; both report them, read from the registry.
    for replica in &replicas {
        metrics_show(replica, &spares_gauge(replica, 10).await).await;
    }

    let orgs: Vec<String> = (0..50).map(|i| format!("26301483917831{i:04}")).collect();
    let created = futures::future::join_all(orgs.iter().enumerate().map(|(i, org)| {
        let registry = &replicas[i % 2];
        async move {
            registry
                .call(
                    Method::POST,
                    "/v1/tenants?wait=60s",
                    Some(json!({"org_id": org, "name": format!("Sign-up {i}")})),
                )
                .await
        }
    }))
    .await;
    for answer in &created {
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    }
    let mut warm = 0;
    for org in &orgs {
        let ops = replicas[0]
            .call(Method::GET, &format!("/v1/tenants/{org}/operations"), None)
            .await;
        let provision = ops
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|op| op["kind"] == "provision")
            .unwrap()
            .clone();
        assert_eq!(provision["state"], "succeeded", "{provision}");
        if provision["provision_path"] == "warm" {
            warm += 1;
        }
    }
    assert_eq!(warm, 10);
    assert_eq!(deployment.tenant_databases().len(), 50);
    assert_eq!(spares(&replicas[0]).await, 0);
    for replica in &replicas {
        metrics_show(replica, &spares_gauge(replica, 0).await).await;
        // Every operation is done: no series keeps a count from while they ran.
        metrics_show(
            replica,
            "tenancy_operations{kind=\"provision\",state=\"running\"} 0",
        )
        .await;
    }
}
