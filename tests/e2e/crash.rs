use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::Deployment;
use tenancy_testkit::eventually;

/// SIGKILL in the middle of 30 concurrent onboardings; the restarted service finishes them all.
#[tokio::test]
async fn a_killed_registry_resumes_every_onboarding_after_restart() {
    let deployment = Deployment::new().unwrap();
    let mut registry = deployment.start().await.unwrap();
    let requests = (0..30).map(|i| {
        let registry = &registry;
        async move {
            registry
                .call(
                    Method::POST,
                    "/v1/tenants",
                    Some(json!({"org_id": format!("5{i:04}"), "name": format!("Crash Org {i}")})),
                )
                .await
        }
    });
    let answers = futures::future::join_all(requests).await;
    assert!(
        answers.iter().all(|a| a.status == StatusCode::ACCEPTED),
        "{answers:?}"
    );
    // Let some of the work start, then kill the process wherever it is.
    tokio::time::sleep(Duration::from_millis(300)).await;
    registry.kill_hard();
    let before = deployment.tenant_databases().len();

    let registry = deployment.start().await.unwrap();
    eventually(Duration::from_secs(120), "all 30 active", || async {
        let list = registry
            .call(Method::GET, "/v1/tenants?status=active&limit=500", None)
            .await;
        (list.body["items"].as_array().unwrap().len() == 30).then_some(())
    })
    .await;
    let databases = deployment.tenant_databases();
    assert_eq!(
        databases.len(),
        30,
        "{databases:?} (there were {before} when it was killed)"
    );
    let all = registry
        .call(Method::GET, "/v1/tenants?limit=500", None)
        .await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 30);
}

/// SIGTERM: the service stops taking work and exits cleanly.
#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let deployment = Deployment::new().unwrap();
    let mut registry = deployment.start().await.unwrap();
    let answer = registry
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"org_id": "77", "name": "Term"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert!(
        registry.terminate(Duration::from_secs(30)),
        "clean exit\n{}",
        deployment.log()
    );
    // Whatever was left is finished by the next process.
    let registry = deployment.start().await.unwrap();
    registry
        .wait_for("/v1/tenants/77", "status", "active")
        .await;
}
