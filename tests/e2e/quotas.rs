//! Product quotas against two registry processes at once: a quota is never passed, an
//! idempotency key never counts twice, hostile input changes nothing.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenancy_e2e::{Deployment, Registry};

const ORG: &str = "263014839178313731";

async fn count(registry: &Registry, resource: &str, body: Value) -> (StatusCode, Value) {
    let answer = registry
        .call(
            Method::POST,
            &format!("/v1/tenants/{ORG}/usage/{resource}"),
            Some(body),
        )
        .await;
    (answer.status, answer.body)
}

async fn quota(registry: &Registry, resource: &str) -> Value {
    let quotas = registry
        .call(Method::GET, &format!("/v1/tenants/{ORG}/quotas"), None)
        .await;
    quotas
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["resource"] == resource)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn racing_clients_on_two_replicas_never_pass_a_quota_or_count_a_key_twice() {
    let deployment = Deployment::new().unwrap();
    let replicas = [
        deployment.start().await.unwrap(),
        deployment.start().await.unwrap(),
    ];
    let created = replicas[0]
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"org_id": ORG, "name": "Acme Corp", "tier": "free"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{created:?}");

    // 8 clients, half on each replica, 2,000 increments of api_calls (1,000 a month on free).
    let statuses = futures::future::join_all((0..8).map(|client| {
        let registry = &replicas[client % 2];
        async move {
            let mut statuses = Vec::new();
            for attempt in 0..250 {
                let key = format!("call-{client}-{attempt}");
                let (status, _) = count(
                    registry,
                    "api_calls",
                    json!({"amount": 1, "idempotency_key": key}),
                )
                .await;
                statuses.push(status);
            }
            statuses
        }
    }))
    .await;
    let mut tally = BTreeMap::new();
    for status in statuses.into_iter().flatten() {
        *tally.entry(status.as_u16()).or_insert(0) += 1;
    }
    assert_eq!(tally, BTreeMap::from([(200, 1000), (429, 1000)]));
    let calls = quota(&replicas[1], "api_calls").await;
    assert_eq!(
        (calls["used"].as_i64(), calls["remaining"].as_i64()),
        (Some(1000), Some(0))
    );
    assert!(
        calls["resets_at"]
            .as_str()
            .unwrap()
            .contains("-01T00:00:00"),
        "{calls}"
    );

    // Refused: a problem with the figures, nothing counted.
    let refused = replicas[0]
        .call(
            Method::POST,
            &format!("/v1/tenants/{ORG}/usage/api_calls"),
            Some(json!({"amount": 1})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(refused.body["code"], "quota_exceeded");
    assert_eq!(
        (
            refused.body["limit"].as_i64(),
            refused.body["used"].as_i64()
        ),
        (Some(1000), Some(1000))
    );
    assert_eq!(refused.body["resets_at"], calls["resets_at"]);

    // A key that counted is replayed, not counted, even when it races itself on both replicas.
    let (status, replay) = count(
        &replicas[1],
        "api_calls",
        json!({"amount": 1, "idempotency_key": "call-0-0"}),
    )
    .await;
    assert_eq!(
        (status, &replay["replayed"]),
        (StatusCode::OK, &json!(true))
    );
    let answers = futures::future::join_all((0..8).map(|client| {
        count(
            &replicas[client % 2],
            "devices",
            json!({"amount": 3, "idempotency_key": "register-batch-7"}),
        )
    }))
    .await;
    assert!(
        answers.iter().all(|(status, _)| *status == StatusCode::OK),
        "{answers:?}"
    );
    let firsts = answers
        .iter()
        .filter(|(_, body)| body["replayed"] == false)
        .count();
    assert_eq!(firsts, 1, "{answers:?}");
    assert_eq!(quota(&replicas[0], "devices").await["used"], 3);

    // A check counts nothing.
    let check = replicas[0]
        .call(
            Method::POST,
            &format!("/v1/tenants/{ORG}/quotas/check"),
            Some(json!({"resource": "devices", "amount": 7})),
        )
        .await;
    assert_eq!(
        (check.status, &check.body["allowed"]),
        (StatusCode::OK, &json!(true))
    );
    let check = replicas[0]
        .call(
            Method::POST,
            &format!("/v1/tenants/{ORG}/quotas/check"),
            Some(json!({"resource": "devices", "amount": 8})),
        )
        .await;
    assert_eq!(check.body["allowed"], false);

    // Hostile amounts and keys: 422; an unknown or invalid quota name: 404 or 400.
    for body in [
        json!({"amount": 0}),
        json!({"amount": -1}),
        json!({"amount": 1.5}),
        json!({"amount": "1"}),
        json!({"amount": 1_000_000_001u64}),
        json!({"amount": 1, "idempotency_key": ""}),
        json!({"amount": 1, "idempotency_key": "x".repeat(129)}),
        json!({"amount": 1, "idempotency_key": "new\nline"}),
        json!({"amount": 1, "note": "extra"}),
        json!({}),
    ] {
        let (status, answer) = count(&replicas[0], "devices", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
    }
    let (status, _) = count(&replicas[0], "storage", json!({"amount": 1})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = count(&replicas[0], "Devices!", json!({"amount": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(quota(&replicas[1], "devices").await["used"], 3);

    // The usage log has every counted increment once, newest first, in pages.
    let mut seen = 0;
    let mut cursor: Option<i64> = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/v1/tenants/{ORG}/usage-log?limit=500&cursor={c}"),
            None => format!("/v1/tenants/{ORG}/usage-log?limit=500"),
        };
        let page = replicas[1].call(Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        seen += page.body["entries"].as_array().unwrap().len();
        match page.body["next_cursor"].as_i64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, 1001);
}

/// An agency's cap on its clients' sum, raced by 8 clients on two replicas: counted exactly up
/// to the cap, never past it, each increment all or nothing.
#[tokio::test]
async fn an_agency_cap_raced_on_two_replicas_is_never_passed() {
    let deployment = Deployment::new().unwrap();
    let replicas = [
        deployment.start().await.unwrap(),
        deployment.start().await.unwrap(),
    ];
    let mut requests =
        vec![json!({"org_id": "6000", "name": "MSP", "kind": "agency", "tier": "msp"})];
    requests.extend((1..=4).map(|i| {
        json!({"org_id": format!("600{i}"), "name": format!("MSP Client {i}"),
               "parent_org_id": "6000", "tier": "msp"})
    }));
    for request in requests {
        let created = replicas[0]
            .call(Method::POST, "/v1/tenants?wait=60s", Some(request))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    }
    // The msp cap: 10,000 devices over all clients. 8 racers, 4 increments of 500 each: 16,000
    // asked, 20 increments fit.
    let statuses = futures::future::join_all((0..8).map(|racer| {
        let registry = &replicas[racer % 2];
        let client = format!("600{}", racer % 4 + 1);
        async move {
            let mut statuses = Vec::new();
            for _ in 0..4 {
                let answer = registry
                    .call(
                        Method::POST,
                        &format!("/v1/tenants/{client}/usage/devices"),
                        Some(json!({"amount": 500})),
                    )
                    .await;
                if answer.status == StatusCode::TOO_MANY_REQUESTS {
                    assert_eq!(answer.body["agency_org_id"], "6000", "{answer:?}");
                }
                statuses.push(answer.status.as_u16());
            }
            statuses
        }
    }))
    .await;
    let mut tally = BTreeMap::new();
    for status in statuses.into_iter().flatten() {
        *tally.entry(status).or_insert(0) += 1;
    }
    assert_eq!(tally, BTreeMap::from([(200, 20), (429, 12)]));
    let quotas = replicas[1]
        .call(Method::GET, "/v1/tenants/6001/quotas", None)
        .await;
    let cap = quotas
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["resource"] == "devices" && q["agency_org_id"] == "6000")
        .unwrap()
        .clone();
    assert_eq!(
        (cap["used"].as_i64(), cap["limit"].as_i64()),
        (Some(10000), Some(10000))
    );
}
