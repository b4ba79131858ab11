use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::Deployment;

#[tokio::test]
async fn bad_input_gets_a_problem_and_changes_nothing() {
    let deployment = Deployment::new().unwrap();
    let registry = deployment.start().await.unwrap();
    let long = "a".repeat(200);

    let cases: Vec<(Method, String, &str, Vec<u8>, StatusCode)> = vec![
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            b"[]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            "text/plain",
            br#"{"org_id":"1","name":"A"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            json!({"org_id": "1", "name": "A", "owner": "x"})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            json!({"org_id": "1'; DROP TABLE tenants;--", "name": "A"})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            json!({"org_id": "1", "name": "A", "slug": "x\"; DROP ROLE postgres"})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            json!({"org_id": "1", "name": "A", "slug": long})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            json!({"org_id": "1", "name": ""}).to_string().into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            json!({"org_id": "1", "name": "A", "region": "nowhere"})
                .to_string()
                .into_bytes(),
            StatusCode::CONFLICT,
        ),
        // A well-formed tier the configuration does not define (the document lists them).
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            json!({"org_id": "1", "name": "A", "tier": "platinum"})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::GET,
            "/v1/tenants?tier=platinum".into(),
            "application/json",
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        // serde reads a struct from an array of its fields; the document says object.
        (
            Method::PATCH,
            "/v1/tenants/12345".into(),
            "application/json",
            b"[null, null]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/servers".into(),
            "application/json",
            json!({"id": "pg-2", "region": "local", "host": "127.0.0.1", "capacity": 8.5,
                   "admin_user": "postgres", "password_env": "TENANCY_SERVER_PASSWORD_X"})
            .to_string()
            .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            "application/json",
            vec![b' '; 200_000],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        // Durations need their unit, as everywhere else.
        (
            Method::POST,
            "/v1/tenants?wait=30".into(),
            "application/json",
            json!({"org_id": "1", "name": "A"}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::DELETE,
            "/v1/servers".into(),
            "application/json",
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::POST,
            "/v1/tenants?wait=forever".into(),
            "application/json",
            json!({"org_id": "1", "name": "A"}).to_string().into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/tenants/1';DROP".into(),
            "application/json",
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            format!("/v1/tenants/{}", "9".repeat(300)),
            "application/json",
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/tenants?limit=100000".into(),
            "application/json",
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/tenants?status=bogus".into(),
            "application/json",
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/tenants?cursor=%%%".into(),
            "application/json",
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/operations/not-a-uuid".into(),
            "application/json",
            vec![],
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/tenants/12345".into(),
            "application/json",
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/tenants/12345/suspend".into(),
            "application/json",
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/nothing-here".into(),
            "application/json",
            vec![],
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/v1/changes?after=-5".into(),
            "application/json",
            vec![],
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, content_type, body, expected) in cases {
        let answer = registry
            .raw(method.clone(), &path, content_type, body)
            .await;
        assert_eq!(answer.status, expected, "{method} {path}: {answer:?}");
        assert_eq!(
            answer.content_type, "application/problem+json",
            "{method} {path}"
        );
        assert!(
            answer.body["code"].is_string() && answer.body["detail"].is_string(),
            "{answer:?}"
        );
    }

    // An oversized body is told the limit.
    let large = registry
        .raw(
            Method::POST,
            "/v1/tenants",
            "application/json",
            vec![b' '; 200_000],
        )
        .await;
    assert_eq!(
        large.body["detail"],
        "the request body is larger than the limit of 131072 bytes"
    );

    // No token, or a wrong one: 401.
    for token in [None, Some("wrong")] {
        let answer = registry
            .call_as(token, Method::GET, "/v1/tenants", None)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.body["code"], "unauthorized");
    }

    // Nothing was made.
    let list = registry.call(Method::GET, "/v1/tenants", None).await;
    assert_eq!(list.body["items"], json!([]));
    assert!(deployment.tenant_databases().is_empty());
}

/// A caller's request id is a correlation id only: one of a sane shape is kept (and answered
/// back), any other is replaced by one of the registry's own (security review L12).
#[tokio::test]
async fn a_request_id_is_kept_only_when_it_is_a_plain_correlation_id() {
    let deployment = Deployment::new().unwrap();
    let registry = deployment.start().await.unwrap();
    let answered = |id: &'static str| {
        let registry = &registry;
        async move {
            let response = registry
                .http
                .get(format!("{}/v1/tenants", registry.base))
                .bearer_auth(tenancy_e2e::TOKEN)
                .header("x-request-id", id)
                .send()
                .await
                .unwrap();
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(answered("trace-42.a:b_c").await, "trace-42.a:b_c");
    for odd in [
        "<script>alert(1)</script>",
        "with space",
        "x-really-long-0123456789-0123456789-0123456789-0123456789-0123456789",
    ] {
        let got = answered(odd).await;
        assert_ne!(got, odd);
        assert!(uuid::Uuid::parse_str(&got).is_ok(), "{got}");
    }
}
