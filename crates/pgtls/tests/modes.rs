//! Each sslmode against a cluster that requires TLS, with a certificate for 127.0.0.1 only.

use tenancy_core::SslMode;
use tenancy_testkit::{ClusterOptions, PgCluster, TestCa};

/// Connects as the superuser to `host` and answers whether the session is encrypted.
async fn connect(
    cluster: &PgCluster,
    host: &str,
    mode: SslMode,
    ca: Option<&str>,
) -> Result<bool, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(cluster.port())
        .user(cluster.admin_user())
        .password(cluster.admin_password())
        .dbname("postgres")
        .ssl_mode(tenancy_pgtls::tokio_ssl_mode(mode));
    let tls = tenancy_pgtls::connector(mode, ca).map_err(|e| e.to_string())?;
    let (client, connection) = config.connect(tls).await.map_err(|e| format!("{e:?}"))?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn each_mode_checks_what_libpq_checks() {
    let cluster =
        PgCluster::start_with(ClusterOptions::default().with_tls_names(&["127.0.0.1"])).unwrap();
    let ca = cluster.ca_pem().unwrap();
    let wrong = TestCa::new("another CA").unwrap().pem();

    // verify-full: the right CA and the name the certificate holds.
    assert_eq!(
        connect(&cluster, "127.0.0.1", SslMode::VerifyFull, Some(ca)).await,
        Ok(true)
    );
    // ... a name it does not hold, or another CA, fails.
    let refused = connect(&cluster, "localhost", SslMode::VerifyFull, Some(ca))
        .await
        .unwrap_err();
    assert!(refused.contains("NotValidForName"), "{refused}");
    let refused = connect(&cluster, "127.0.0.1", SslMode::VerifyFull, Some(&wrong))
        .await
        .unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // Without a CA of its own, the public web roots: a private CA is not among them.
    assert!(
        connect(&cluster, "127.0.0.1", SslMode::VerifyFull, None)
            .await
            .is_err()
    );

    // verify-ca: the CA, whatever the name; another CA still fails.
    assert_eq!(
        connect(&cluster, "localhost", SslMode::VerifyCa, Some(ca)).await,
        Ok(true)
    );
    assert!(
        connect(&cluster, "localhost", SslMode::VerifyCa, Some(&wrong))
            .await
            .is_err()
    );
    // verify-ca without a CA would trust any public certificate for any name: refused.
    assert!(tenancy_pgtls::client_config(SslMode::VerifyCa, None).is_err());

    // require: encrypted, the certificate unchecked.
    assert_eq!(
        connect(&cluster, "localhost", SslMode::Require, Some(&wrong)).await,
        Ok(true)
    );

    // disable: plain text, which this server refuses.
    let refused = connect(&cluster, "127.0.0.1", SslMode::Disable, None)
        .await
        .unwrap_err();
    assert!(refused.contains("no pg_hba.conf entry"), "{refused}");
}

#[test]
fn a_ca_that_is_not_pem_is_refused() {
    assert!(tenancy_pgtls::parse_ca("not a certificate").is_err());
    let garbage = "-----BEGIN CERTIFICATE-----\nbm90IG9uZQ==\n-----END CERTIFICATE-----\n";
    assert!(tenancy_pgtls::parse_ca(garbage).is_err());
    let real = tenancy_testkit::TestCa::new("a CA").unwrap().pem();
    assert_eq!(tenancy_pgtls::parse_ca(&real).unwrap().len(), 1);
    assert!(tenancy_pgtls::connector(SslMode::VerifyFull, Some("")).is_err());
}
