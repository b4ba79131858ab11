use sqlx::Row;
use tenancy_testkit::{TestCa, TestFleet};

use crate::helpers::*;

/// On servers that accept TLS connections only, with `verify-full` and each server's CA in the
/// configuration: the registry database, the admin pools and the template migrations all connect
/// (they could not otherwise), and so does the tenant's role. A server configured with the wrong
/// CA is never prepared.
#[tokio::test]
async fn every_connection_to_a_tls_server_is_verified() {
    let fleet = TestFleet::builder()
        .server("pg-1", "local")
        .server("pg-2", "local")
        .tls()
        .build()
        .unwrap();
    let mut config = config(&fleet);
    config.servers[1].ca_pem = Some(TestCa::new("not pg-2's CA").unwrap().pem());
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());

    let tenant = onboard(&engine, request("4301", "Encrypted")).await;
    assert_eq!(tenant.server_id.as_ref().unwrap().as_str(), "pg-1");
    let mut conn = connect_own(&engine, fleet.cluster("pg-1"), &tenant)
        .await
        .unwrap();
    let row = sqlx::query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(row.get::<bool, _>("ssl"));
    assert!(row.get::<String, _>("version").starts_with("TLS"));

    // The connection info hands the router the server's mode and CA.
    let info = engine.connection_info(&tenant.org_id).await.unwrap();
    assert_eq!(info.sslmode, tenancy_core::SslMode::VerifyFull);
    assert_eq!(info.ca_pem.as_deref(), fleet.cluster("pg-1").ca_pem());

    // pg-2's certificate does not chain to the CA configured for it.
    let pg2 = engine.server(&"pg-2".parse().unwrap()).await.unwrap();
    assert_eq!(pg2.template_version, None, "{pg2:?}");
    let refused = engine
        .server_admin(&"pg-2".parse().unwrap())
        .await
        .unwrap()
        .prepare(None)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().to_lowercase().contains("certificate"),
        "{refused}"
    );
}
