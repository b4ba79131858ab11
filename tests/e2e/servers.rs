use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::Deployment;
use tenancy_testkit::PgCluster;

/// Registering a server names no secret but a server password, checks every field, and leaves
/// the server disabled until it has been prepared.
#[tokio::test]
async fn a_registered_server_names_only_server_passwords_and_stays_disabled_until_prepared() {
    let deployment = Deployment::new().unwrap();
    let extra = PgCluster::start().unwrap();
    let registry = deployment
        .start_with_env(&[("TENANCY_SERVER_PASSWORD_EXTRA", extra.admin_password())])
        .await
        .unwrap();
    let server = |id: &str, port: u16, password_env: &str| {
        json!({"id": id, "region": "local", "host": "127.0.0.1", "port": port,
               "admin_user": "postgres", "password_env": password_env, "capacity": 10})
    };

    // Secrets the registry holds are never named; bad fields are refused, nothing recorded.
    let mut bad_host = server("bad-host", extra.port(), "TENANCY_SERVER_PASSWORD_EXTRA");
    bad_host["host"] = "evil.example/path".into();
    for body in [
        server("steal-key", extra.port(), "TENANCY_MASTER_KEY"),
        server("steal-url", extra.port(), "TENANCY_REGISTRY__URL"),
        server("port-zero", 0, "TENANCY_SERVER_PASSWORD_EXTRA"),
        bad_host,
    ] {
        let answer = registry
            .call(Method::POST, "/v1/servers", Some(body.clone()))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {answer:?}"
        );
        assert_eq!(answer.body["code"], "validation_failed");
    }

    // A server that cannot be reached: registered, disabled, never placed on.
    let unreachable = registry
        .call(
            Method::POST,
            "/v1/servers",
            Some(server("pg-down", 1, "TENANCY_SERVER_PASSWORD_EXTRA")),
        )
        .await;
    assert_eq!(
        unreachable.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{unreachable:?}"
    );
    let servers = registry.call(Method::GET, "/v1/servers", None).await;
    let down = servers
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "pg-down")
        .unwrap();
    assert_eq!(down["state"], "disabled");
    let ids: Vec<&str> = servers
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"steal-key") && !ids.contains(&"port-zero"),
        "{ids:?}"
    );

    // A reachable one: prepared, then active.
    let added = registry
        .call(
            Method::POST,
            "/v1/servers",
            Some(server(
                "pg-extra",
                extra.port(),
                "TENANCY_SERVER_PASSWORD_EXTRA",
            )),
        )
        .await;
    assert_eq!(
        added.status,
        StatusCode::CREATED,
        "{added:?}\n{}",
        deployment.log()
    );
    assert_eq!(added.body["state"], "active");
    assert_eq!(added.body["template_version"], 4);
    assert_eq!(
        extra
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'tenant_template'"
            )
            .unwrap(),
        "1"
    );
}
