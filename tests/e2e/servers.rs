use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::Deployment;
use tenancy_testkit::{ClusterOptions, PgCluster, TestCa};

/// Registering a server names no secret but a server password, checks every field, and leaves
/// the server disabled until it has been prepared.
#[tokio::test]
async fn a_registered_server_names_only_server_passwords_and_stays_disabled_until_prepared() {
    let deployment = Deployment::new().unwrap();
    let extra = PgCluster::start().unwrap();
    let sealed = PgCluster::start_with(ClusterOptions::default().with_tls()).unwrap();
    let registry = deployment
        .start_with_env(&[
            ("TENANCY_SERVER_PASSWORD_PG_EXTRA", extra.admin_password()),
            ("TENANCY_SERVER_PASSWORD_BAD_CA", extra.admin_password()),
            ("TENANCY_SERVER_PASSWORD_PG_DOWN", extra.admin_password()),
            (
                "TENANCY_SERVER_PASSWORD_PG_WRONG_CA",
                sealed.admin_password(),
            ),
            ("TENANCY_SERVER_PASSWORD_PG_SEALED", sealed.admin_password()),
        ])
        .await
        .unwrap();
    let server = |id: &str, port: u16, password_env: &str| {
        json!({"id": id, "region": "local", "host": "127.0.0.1", "port": port,
               "admin_user": "postgres", "password_env": password_env, "capacity": 10})
    };

    // Secrets the registry holds are never named; bad fields are refused, nothing recorded.
    let mut bad_host = server("bad-host", extra.port(), "TENANCY_SERVER_PASSWORD_EXTRA");
    bad_host["host"] = "evil.example/path".into();
    let mut bad_ca = server("bad-ca", extra.port(), "TENANCY_SERVER_PASSWORD_BAD_CA");
    bad_ca["ca_pem"] = "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----".into();
    let mut falls_back = server("prefer", extra.port(), "TENANCY_SERVER_PASSWORD_EXTRA");
    falls_back["sslmode"] = "prefer".into();
    // Another server's password variable, or a remote host in the clear: never sent there.
    let stealer = server(
        "pg-stealer",
        extra.port(),
        "TENANCY_SERVER_PASSWORD_PG_EXTRA",
    );
    let mut clear = server("pg-clear", extra.port(), "TENANCY_SERVER_PASSWORD_PG_CLEAR");
    clear["host"] = "db.example.com".into();
    clear["sslmode"] = "disable".into();
    for body in [
        bad_ca,
        falls_back,
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

    // Another server's password variable, or a remote host in the clear: refused before any
    // connection, nothing recorded.
    let mut nameless = server(
        "pg-nameless",
        extra.port(),
        "TENANCY_SERVER_PASSWORD_PG_NAMELESS",
    );
    nameless["host"] = "db.example.com".into();
    nameless["sslmode"] = "verify-ca".into();
    for body in [stealer, clear, nameless] {
        let answer = registry
            .call(Method::POST, "/v1/servers", Some(body.clone()))
            .await;
        assert_eq!(answer.status, StatusCode::CONFLICT, "{body}: {answer:?}");
        assert_eq!(answer.body["code"], "server_refused", "{answer:?}");
    }

    // A server that cannot be reached: registered, disabled, never placed on.
    let unreachable = registry
        .call(
            Method::POST,
            "/v1/servers",
            Some(server("pg-down", 1, "TENANCY_SERVER_PASSWORD_PG_DOWN")),
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
                "TENANCY_SERVER_PASSWORD_PG_EXTRA",
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
    assert_eq!(
        added.body["template_version"],
        tenancy_control::migrate::latest_template_version()
    );
    assert_eq!(
        extra
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'tenant_template'"
            )
            .unwrap(),
        "1"
    );

    // A server that takes TLS only: with its CA, verified and prepared; with another CA, kept
    // disabled. The CA is never answered back.
    let tls_server = |id: &str, ca: String| {
        let env = tenancy_control::password_env_of(&id.parse().unwrap());
        let mut body = server(id, sealed.port(), &env);
        body["sslmode"] = "verify-full".into();
        body["ca_pem"] = ca.into();
        body
    };
    let wrong = registry
        .call(
            Method::POST,
            "/v1/servers",
            Some(tls_server(
                "pg-wrong-ca",
                TestCa::new("other").unwrap().pem(),
            )),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::SERVICE_UNAVAILABLE, "{wrong:?}");
    let added = registry
        .call(
            Method::POST,
            "/v1/servers",
            Some(tls_server("pg-sealed", sealed.ca_pem().unwrap().to_owned())),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{added:?}");
    assert_eq!(added.body["state"], "active");
    assert_eq!(added.body["sslmode"], "verify-full");
    assert!(added.body.get("ca_pem").is_none(), "{added:?}");

    // A registration that was never prepared can be deleted, and is never visited again; a
    // prepared one, or one of the configuration file, cannot.
    for (id, status, code) in [
        ("pg-extra", StatusCode::CONFLICT, Some("invalid_state")),
        ("pg-1", StatusCode::CONFLICT, Some("server_refused")),
        ("pg-nowhere", StatusCode::NOT_FOUND, Some("not_found")),
        ("pg-down", StatusCode::NO_CONTENT, None),
        ("pg-wrong-ca", StatusCode::NO_CONTENT, None),
    ] {
        let answer = registry
            .call(Method::DELETE, &format!("/v1/servers/{id}"), None)
            .await;
        assert_eq!(answer.status, status, "{id}: {answer:?}");
        if let Some(code) = code {
            assert_eq!(answer.body["code"], code, "{id}: {answer:?}");
        }
    }
    let servers = registry.call(Method::GET, "/v1/servers", None).await;
    let ids: Vec<&str> = servers
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        !ids.contains(&"pg-down") && ids.contains(&"pg-extra"),
        "{ids:?}"
    );
}

/// A server `tenantctl` adds is placed on only once a running registry has connected to it
/// itself: a registry without the server's password leaves it disabled (and says why), one with
/// it activates it within seconds.
#[tokio::test]
async fn a_server_added_by_tenantctl_is_activated_only_by_a_registry_that_reaches_it() {
    let deployment = Deployment::new().unwrap();
    let extra = PgCluster::start().unwrap();
    let without = deployment.start().await.unwrap();
    let added = deployment
        .fleet
        .command(tenancy_e2e::binary("tenantctl"))
        .unwrap()
        .env("TENANCY_SERVER_PASSWORD_EXTRA", extra.admin_password())
        .args(["servers", "add", "--id", "extra", "--region", "local"])
        .args(["--host", "127.0.0.1", "--port", &extra.port().to_string()])
        .args(["--admin-user", "postgres", "--capacity", "10"])
        .args(["--password-env", "TENANCY_SERVER_PASSWORD_EXTRA"])
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    // Several refill rounds (every 2 s) go by: this registry cannot reach it.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(state(&without, "extra").await, "disabled");
    assert!(
        deployment
            .log()
            .contains("cannot activate the server from this registry"),
        "{}",
        deployment.log()
    );
    drop(without);

    let with = deployment
        .start_with_env(&[("TENANCY_SERVER_PASSWORD_EXTRA", extra.admin_password())])
        .await
        .unwrap();
    tenancy_testkit::eventually(
        std::time::Duration::from_secs(15),
        "the registry that reaches it activates it",
        || async { (state(&with, "extra").await == "active").then_some(()) },
    )
    .await;
}

/// The state the registry shows for server `id`.
async fn state(registry: &tenancy_e2e::Registry, id: &str) -> String {
    let servers = registry.call(Method::GET, "/v1/servers", None).await;
    let server = servers
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id);
    server.unwrap()["state"].as_str().unwrap().to_owned()
}
