//! The router against real PostgreSQL: budgets under load, suspension through the registry's
//! change feed, typed refusals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::Connection;
use tenancy_client::RegistryClient;
use tenancy_core::{
    ConnectionInfo, MoveTenant, OperationState, OrgId, PutSetting, SettingType, TenantStatus,
};
use tenancy_registry::testing::{DEV_TOKEN, InProcessRegistry};
use tenancy_router::{RegistryResolver, RouterConfig, RouterError, StaticResolver, TenantRouter};
use tenancy_testkit::{ClusterOptions, PgCluster, eventually};

fn info(cluster: &PgCluster, org: &str, db: &str, status: TenantStatus) -> ConnectionInfo {
    ConnectionInfo {
        org_id: org.parse().unwrap(),
        host: cluster.host().into(),
        port: cluster.port(),
        dbname: db.parse().unwrap(),
        user: "app_user".parse().unwrap(),
        password: Some("app-password".into()),
        server_id: "pg-1".parse().unwrap(),
        status,
        tier: "free".parse().unwrap(),
        kind: tenancy_core::TenantKind::Standalone,
        parent_org_id: None,
        agency_status: None,
        pool_size: 2,
        sslmode: tenancy_core::SslMode::Disable,
        ca_pem: None,
    }
}

/// A server with the role `info` logs in as.
fn server_with_app_user(options: ClusterOptions) -> PgCluster {
    let cluster = PgCluster::start_with(options).unwrap();
    cluster
        .psql(
            "postgres",
            "CREATE ROLE app_user LOGIN PASSWORD 'app-password'",
        )
        .unwrap();
    cluster
}

/// Makes the tenant's database and resolves the organization to it, active.
fn add_tenant(cluster: &PgCluster, resolver: &StaticResolver, org: &str, db: &str) {
    cluster
        .psql("postgres", &format!("CREATE DATABASE {db}"))
        .unwrap();
    resolver.set(info(cluster, org, db, TenantStatus::Active));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_tenants_never_take_more_than_the_server_budget() {
    tenancy_testkit::init_test_logging();
    let cluster = server_with_app_user(ClusterOptions {
        max_connections: 120,
        ..Default::default()
    });
    let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    let resolver = Arc::new(StaticResolver::new());
    for i in 0..500 {
        let db = format!("tenant_load_{i}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut admin)
            .await
            .unwrap();
        resolver.set(info(
            &cluster,
            &format!("{}", 10_000 + i),
            &db,
            TenantStatus::Active,
        ));
    }
    let config = RouterConfig {
        per_server_budget: 40,
        acquire_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let router = TenantRouter::new(resolver, config);

    // Sample the server's own view of our connections while the workload runs, on a thread of
    // its own: the borrowers' logins keep the test's two runtime threads busy.
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, peak, url) = (done.clone(), peak.clone(), cluster.url("postgres"));
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
                    while !done.load(Ordering::SeqCst) {
                        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenancy-router'")
                            .fetch_one(&mut conn)
                            .await
                            .unwrap();
                        peak.fetch_max(n as usize, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
        })
    };

    let errors = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (router, errors) = (router.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                let i = rand::rng().random_range(0..500);
                let org: OrgId = format!("{}", 10_000 + i).parse().unwrap();
                match router.get(&org).await {
                    Ok(client) => {
                        let row = client
                            .query_one("SELECT current_database()", &[])
                            .await
                            .unwrap();
                        let db: String = row.get(0);
                        assert_eq!(
                            db,
                            format!("tenant_load_{i}"),
                            "a connection reached the wrong database"
                        );
                    }
                    Err(e) => {
                        eprintln!("borrow failed: {e}");
                        errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert_eq!(
        errors.load(Ordering::SeqCst),
        0,
        "every borrow succeeded (no 'too many clients')"
    );
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= 40,
        "peak {peak} connections exceeds the budget of 40"
    );
    assert!(peak >= 20, "the workload used the budget ({peak})");
    assert!(router.connections_per_server().values().all(|n| *n <= 40));
}

#[tokio::test]
async fn refused_and_unknown_tenants_are_typed_errors() {
    let cluster = PgCluster::start().unwrap();
    let resolver = Arc::new(StaticResolver::new());
    resolver.set(info(&cluster, "1", "postgres", TenantStatus::Suspended));
    resolver.set(info(&cluster, "2", "postgres", TenantStatus::Deleted));
    resolver.set(info(&cluster, "3", "postgres", TenantStatus::Provisioning));
    let router = TenantRouter::new(resolver.clone(), RouterConfig::default());
    assert!(matches!(
        router.get(&"1".parse().unwrap()).await,
        Err(RouterError::Suspended(_))
    ));
    assert!(matches!(
        router.get(&"2".parse().unwrap()).await,
        Err(RouterError::Deleted(_))
    ));
    assert!(matches!(
        router.get(&"3".parse().unwrap()).await,
        Err(RouterError::NotActive { .. })
    ));
    assert!(matches!(
        router.get(&"4".parse().unwrap()).await,
        Err(RouterError::UnknownTenant(_))
    ));
    // An unknown organization is remembered a while (security review 2, N16): asking again
    // costs the registry nothing, until the change feed reports it onboarded.
    let asked = resolver.resolutions();
    for _ in 0..100 {
        assert!(matches!(
            router.get(&"4".parse().unwrap()).await,
            Err(RouterError::UnknownTenant(_))
        ));
    }
    assert_eq!(resolver.resolutions(), asked);
    resolver.set(info(&cluster, "4", "postgres", TenantStatus::Suspended));
    eventually(Duration::from_secs(2), "the onboarded tenant", || async {
        matches!(
            router.get(&"4".parse().unwrap()).await,
            Err(RouterError::Suspended(_))
        )
        .then_some(())
    })
    .await;

    // A server that refuses the password: a typed error, not a panic.
    let mut bad = info(&cluster, "5", "postgres", TenantStatus::Active);
    bad.password = Some("wrong".into());
    resolver.set(bad);
    let err = router
        .get(&"5".parse().unwrap())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, RouterError::ServerUnavailable { .. }),
        "{err}"
    );
}

/// A registry restored from a backup starts its change sequence over: a router asking after a
/// number it no longer has is told to reset, drops everything it cached, and follows the new
/// sequence (first security review, L13). Before, it waited for changes that never came.
#[tokio::test]
async fn a_restarted_change_feed_resets_the_cache() {
    let cluster = PgCluster::start().unwrap();
    let resolver = Arc::new(StaticResolver::new());
    for org in ["1", "2", "3"] {
        resolver.set(info(&cluster, org, "postgres", TenantStatus::Suspended));
    }
    let router = TenantRouter::new(resolver.clone(), RouterConfig::default());
    assert!(matches!(
        router.get(&"1".parse().unwrap()).await,
        Err(RouterError::Suspended(_))
    ));
    // The follower has caught up with the three changes.
    tokio::time::sleep(Duration::from_millis(300)).await;

    resolver.restart_feed();
    resolver.set(info(&cluster, "1", "postgres", TenantStatus::Deleted));
    eventually(Duration::from_secs(2), "the restored state", || async {
        matches!(
            router.get(&"1".parse().unwrap()).await,
            Err(RouterError::Deleted(_))
        )
        .then_some(())
    })
    .await;
}

/// The registry in-process (real HTTP, real engine), the router following its change feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_in_the_registry_is_refused_within_two_seconds_and_resume_restores() {
    let registry = InProcessRegistry::start().await.unwrap();
    let base = registry.base.clone();
    for (org, name) in [("100", "Routed A"), ("200", "Routed B")] {
        registry.onboard(org, name).await.unwrap();
    }

    let router = TenantRouter::new(
        Arc::new(RegistryResolver::new(&base, DEV_TOKEN)),
        RouterConfig::default(),
    );
    let a: OrgId = "100".parse().unwrap();
    let client = router.get(&a).await.unwrap();
    let row = client
        .query_one("SELECT current_database(), current_user", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("tenant_routed_a".into(), "tenant_routed_a".into())
    );
    drop(client);
    let b = router.get(&"200".parse().unwrap()).await.unwrap();
    let db: String = b
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        db, "tenant_routed_b",
        "each tenant's connection reaches its own database only"
    );
    drop(b);

    // Let the router's feed follower catch up with the onboarding changes first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let suspended_at = Instant::now();
    let registry = RegistryClient::new(base.as_str(), DEV_TOKEN);
    let suspension = registry.suspend(&a).await.unwrap();
    eventually(
        Duration::from_secs(2),
        "the suspension is refused",
        || async {
            match router.get(&a).await {
                Err(RouterError::Suspended(_)) => Some(()),
                Ok(client) => {
                    drop(client);
                    None
                }
                // The role may be blocked a moment before the feed reports the new status.
                Err(RouterError::ServerUnavailable { .. }) => None,
                Err(e) => panic!("unexpected {e}"),
            }
        },
    )
    .await;
    eprintln!("suspension refused after {:?}", suspended_at.elapsed());

    // A resume while the suspension's operation still runs would be 409: let it finish.
    let suspended = registry
        .wait_operation(suspension.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(suspended.state, OperationState::Succeeded);
    let resumed_at = Instant::now();
    registry.resume(&a).await.unwrap();
    let client = eventually(
        Duration::from_secs(5),
        "served again after resume",
        || async { router.get(&a).await.ok() },
    )
    .await;
    client.query_one("SELECT 1", &[]).await.unwrap();
    eprintln!("served again after {:?}", resumed_at.elapsed());
}

/// A credential rotation costs borrowers nothing: the router fetches the new password when the
/// feed reports the rotation, and a borrow that meets a changed password retries once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_rotation_is_invisible_to_borrowers() {
    let registry = InProcessRegistry::start().await.unwrap();
    registry.onboard("300", "Rotating").await.unwrap();
    let router = TenantRouter::new(
        Arc::new(RegistryResolver::new(&registry.base, DEV_TOKEN)),
        RouterConfig::default(),
    );
    let org: OrgId = "300".parse().unwrap();
    drop(router.get(&org).await.unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let (borrows, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (router, org, stop) = (router.clone(), org.clone(), stop.clone());
        let (borrows, failures) = (borrows.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match router.get(&org).await {
                    Ok(client) => {
                        client.query_one("SELECT 1", &[]).await.unwrap();
                        borrows.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        eprintln!("borrow failed: {e}");
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    // Pools closed now and then, as idle reaping does: new connections meet the new password.
    tasks.push(tokio::spawn({
        let (router, org, stop) = (router.clone(), org.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                router.invalidate(&org);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = RegistryClient::new(registry.base.as_str(), DEV_TOKEN);
    for _ in 0..3 {
        let op = client
            .rotate_credentials(&"300".parse().unwrap())
            .await
            .unwrap();
        eventually(Duration::from_secs(30), "the rotation finishes", || async {
            let op = client.operation(op.id).await.unwrap();
            (op.state == OperationState::Succeeded).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(borrows.load(Ordering::SeqCst) > 50);
    assert_eq!(failures.load(Ordering::SeqCst), 0, "no borrow failed");
}

/// A tenant moved to another server while borrowers work: no borrow fails (a refusal during the
/// cutover is retried inside `get`), and the next borrows reach the new server with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_another_server_is_a_short_wait_for_borrowers() {
    let fleet = tenancy_testkit::TestFleet::builder()
        .server_with("pg-1", "local", ClusterOptions::default().logical())
        .server_with("pg-2", "local", ClusterOptions::default().logical())
        .build()
        .unwrap();
    let new_port = fleet.cluster("pg-2").port();
    let registry = InProcessRegistry::start_on(
        fleet,
        tenancy_registry::testing::dev_settings(),
        Vec::new(),
        |config| config.servers[1].capacity = 0,
    )
    .await
    .unwrap();
    registry.onboard("400", "Moving").await.unwrap();
    registry.fleet.servers[0]
        .cluster
        .psql(
            "tenancy_registry",
            "UPDATE database_servers SET capacity = 10",
        )
        .unwrap();
    let router = TenantRouter::new(
        Arc::new(RegistryResolver::new(&registry.base, DEV_TOKEN)),
        RouterConfig::default(),
    );
    let org: OrgId = "400".parse().unwrap();
    drop(router.get(&org).await.unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let (borrows, on_new) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (router, org, stop) = (router.clone(), org.clone(), stop.clone());
        let (borrows, on_new, failures) = (borrows.clone(), on_new.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                match router.get(&org).await {
                    Ok(client) => {
                        worst = worst.max(started.elapsed());
                        // A session the cutover ends under a running query fails that query:
                        // the borrow itself succeeded.
                        if let Ok(row) = client.query_one("SELECT inet_server_port()", &[]).await {
                            borrows.fetch_add(1, Ordering::SeqCst);
                            if row.get::<_, i32>(0) == i32::from(new_port) {
                                on_new.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("borrow failed: {e}");
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            worst
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = RegistryClient::new(registry.base.as_str(), DEV_TOKEN);
    let to_pg2 = MoveTenant {
        server_id: Some("pg-2".parse().unwrap()),
        mode: None,
    };
    let op = client
        .move_tenant(&"400".parse().unwrap(), &to_pg2)
        .await
        .unwrap();
    let moved = client
        .wait_operation(op.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(moved.state, OperationState::Succeeded, "{moved:?}");
    let seen = on_new.load(Ordering::SeqCst);
    eventually(
        Duration::from_secs(5),
        "borrows reach the new server",
        || async { (on_new.load(Ordering::SeqCst) > seen + 20).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut worst = Duration::ZERO;
    for task in tasks {
        worst = worst.max(task.await.unwrap());
    }
    println!(
        "longest borrow during the move: {worst:?}, {} borrows",
        borrows.load(Ordering::SeqCst)
    );
    assert_eq!(failures.load(Ordering::SeqCst), 0, "no borrow failed");
}

/// Every link encrypted: the router asks the registry over HTTPS (trusting the registry's CA
/// only), and connects to a server that accepts TLS only, verifying it with the CA the
/// connection info carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_reaches_the_registry_over_https_and_tenants_over_verified_tls() {
    let fleet = tenancy_testkit::TestFleet::builder().tls().build().unwrap();
    let ca = tenancy_testkit::TestCa::new("registry CA").unwrap();
    let issued = ca.issue(&["127.0.0.1"]).unwrap();
    let (cert_file, key_file) = (
        fleet.dir().join("registry.crt"),
        fleet.dir().join("registry.key"),
    );
    std::fs::write(&cert_file, &issued.cert_pem).unwrap();
    std::fs::write(&key_file, &issued.key_pem).unwrap();
    let mut settings = tenancy_registry::testing::dev_settings();
    settings.tls_cert_file = Some(cert_file);
    settings.tls_key_file = Some(key_file);
    let registry = InProcessRegistry::start_on(fleet, settings, Vec::new(), |_| {})
        .await
        .unwrap();
    assert!(registry.base.starts_with("https://"), "{}", registry.base);
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = http
        .get(format!("{}/healthz", registry.base))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    registry.onboard_with(&http, "310", "Sealed").await.unwrap();
    let org: OrgId = "310".parse().unwrap();

    let router = TenantRouter::new(
        Arc::new(RegistryResolver::with_root_ca(&registry.base, DEV_TOKEN, &ca.pem()).unwrap()),
        RouterConfig::default(),
    );
    let client = router.get(&org).await.unwrap();
    let row = client
        .query_one(
            "SELECT ssl, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "tenant_sealed");
    drop(client);

    // A router that does not trust the registry's CA learns nothing from it.
    let untrusting = TenantRouter::new(
        Arc::new(RegistryResolver::new(&registry.base, DEV_TOKEN)),
        RouterConfig {
            watch_changes: false,
            ..RouterConfig::default()
        },
    );
    let Err(err) = untrusting.get(&org).await else {
        panic!("a connection through an untrusted registry");
    };
    assert!(matches!(err, RouterError::Registry(_)), "{err}");

    // Plain HTTP to the HTTPS port gets no answer either.
    let plain = registry.base.replace("https://", "http://");
    let answered = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    assert!(!answered);
}

/// Settings and features reach product services through the router (secrets in plain text),
/// and a change is seen within two seconds; quotas are counted exactly by `try_consume` and,
/// batched, never past the limit in the registry.
#[tokio::test]
async fn settings_features_and_quotas_through_the_router() {
    let registry = InProcessRegistry::start().await.unwrap();
    registry.onboard("400", "Configured").await.unwrap();
    let router = TenantRouter::new(
        Arc::new(RegistryResolver::new(&registry.base, DEV_TOKEN)),
        RouterConfig {
            quota_flush_interval: Duration::from_millis(100),
            ..RouterConfig::default()
        },
    );
    let org: OrgId = "400".parse().unwrap();
    let client = RegistryClient::new(registry.base.as_str(), DEV_TOKEN);
    let put = |key: &'static str, kind: SettingType, value: serde_json::Value| {
        let (client, org) = (&client, &org);
        async move {
            let setting = PutSetting { kind, value };
            let key = key.parse().unwrap();
            client.put_setting(org, &key, &setting).await.unwrap();
        }
    };
    put(
        "smtp.password",
        SettingType::Secret,
        serde_json::json!("pa55"),
    )
    .await;
    let settings = router.settings(&org).await.unwrap();
    assert_eq!(
        settings.get("smtp.password"),
        Some(&serde_json::json!("pa55"))
    );
    assert!(!settings.is_enabled("sso"), "free has no sso");

    // A change reaches the router through the change feed, within two seconds.
    put("features.sso", SettingType::Bool, serde_json::json!(true)).await;
    let changed = tokio::time::Instant::now();
    while !router.features(&org).await.unwrap().is_enabled("sso") {
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "not seen within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Exact: 5 users on free.
    let quotas = router.quotas(&org);
    assert_eq!(quotas.try_consume("users", 3).await.unwrap().quota.used, 3);
    let refused = quotas.try_consume("users", 3).await.unwrap_err();
    assert!(
        matches!(&refused, RouterError::QuotaExceeded { quota, .. } if quota.used == 3 && quota.limit == 5),
        "{refused}"
    );
    assert!(matches!(
        quotas.try_consume("Users!", 1).await,
        Err(RouterError::InvalidQuota(_))
    ));

    // Batched: 1,500 API calls against 1,000 a month; the registry never counts past the limit
    // and the router refuses at once once it knows.
    let mut accepted = 0;
    for _ in 0..1500 {
        if quotas.increment("api_calls", 1).is_ok() {
            accepted += 1;
        }
        if accepted % 100 == 0 {
            router.flush_quotas().await;
        }
    }
    router.flush_quotas().await;
    assert!(
        quotas.increment("api_calls", 1).is_err(),
        "refused locally once exhausted"
    );
    let status = client.quotas(&org).await.unwrap();
    let calls = status
        .iter()
        .find(|q| q.resource.as_str() == "api_calls")
        .unwrap();
    assert_eq!(calls.used, 1000);
    assert!(
        (1000..1500).contains(&accepted),
        "accepted {accepted}: past the limit by at most one flush's worth"
    );
}

/// With a budget of two connections: a busy tenant and one borrowed once since, then a third.
/// Frequency-aware eviction closes the one-off tenant's connection and keeps the busy one's;
/// least-recently-used closes the busy one's. Counted by the connections each router opened.
#[tokio::test]
async fn the_busy_tenant_keeps_its_connection_under_frequency_eviction() {
    let cluster = server_with_app_user(ClusterOptions::default());
    let resolver = Arc::new(StaticResolver::new());
    for (org, db) in [("501", "busy"), ("502", "once"), ("503", "third")] {
        add_tenant(&cluster, &resolver, org, db);
    }
    let org = |o: &str| -> OrgId { o.parse().unwrap() };
    let mut opened = Vec::new();
    for eviction in [
        tenancy_router::Eviction::Frequency,
        tenancy_router::Eviction::Lru,
    ] {
        let router = TenantRouter::new(
            resolver.clone(),
            RouterConfig {
                per_server_budget: 2,
                eviction,
                watch_changes: false,
                ..RouterConfig::default()
            },
        );
        for _ in 0..10 {
            drop(router.get(&org("501")).await.unwrap());
        }
        drop(router.get(&org("502")).await.unwrap());
        drop(router.get(&org("503")).await.unwrap());
        let before = router.stats();
        assert_eq!(before.connections_opened, 3, "{eviction:?}: {before:?}");
        assert_eq!(before.evictions, 1, "{eviction:?}: {before:?}");
        drop(router.get(&org("501")).await.unwrap());
        let after = router.stats();
        assert_eq!(after.borrows, 13);
        assert!(router.connections_per_server().values().all(|n| *n <= 2));
        opened.push(after.connections_opened - before.connections_opened);
    }
    assert_eq!(
        opened,
        [0, 1],
        "frequency kept the busy tenant's connection; LRU closed it"
    );
}

/// Two busy tenants, a dozen borrowers each, could hold a budget of four connections forever:
/// their connections come back to borrowers of their own. Borrowers of ten other tenants, one
/// after another, must still get a connection promptly: under pressure a busy tenant keeps one
/// connection and gives the other up to the longest waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_tenants_do_not_starve_the_others() {
    let cluster = server_with_app_user(ClusterOptions::default());
    let resolver = Arc::new(StaticResolver::new());
    for i in 0..12 {
        add_tenant(
            &cluster,
            &resolver,
            &format!("{}", 700 + i),
            &format!("fair_{i}"),
        );
    }
    let router = TenantRouter::new(
        resolver,
        RouterConfig {
            per_server_budget: 4,
            acquire_timeout: Duration::from_secs(10),
            watch_changes: false,
            ..RouterConfig::default()
        },
    );
    let done = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..24)
        .map(|i| {
            let (router, done) = (router.clone(), done.clone());
            let org: OrgId = format!("{}", 700 + i % 2).parse().unwrap();
            tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) {
                    let client = router.get(&org).await.unwrap();
                    client.simple_query("SELECT pg_sleep(0.002)").await.unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waits = Vec::new();
    for i in 2..12 {
        let org: OrgId = format!("{}", 700 + i).parse().unwrap();
        let asked = Instant::now();
        let client = router
            .get(&org)
            .await
            .unwrap_or_else(|e| panic!("tenant {org} starved: {e} after {:?}", asked.elapsed()));
        waits.push(asked.elapsed());
        client.simple_query("SELECT 1").await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    for task in busy {
        task.await.unwrap();
    }
    let longest = waits.iter().max().unwrap();
    assert!(
        *longest < Duration::from_secs(2),
        "the other tenants waited {waits:?}"
    );
    assert!(router.connections_per_server().values().all(|n| *n <= 4));
}

/// A tenant resolved again after `cache_ttl` keeps its pool, and its open connection, when the
/// registry's answer did not change; a changed answer (a new password) builds a new pool.
#[tokio::test]
async fn an_unchanged_tenant_keeps_its_connections_past_the_cache_ttl() {
    let cluster = server_with_app_user(ClusterOptions::default());
    let resolver = Arc::new(StaticResolver::new());
    add_tenant(&cluster, &resolver, "801", "kept");
    let router = TenantRouter::new(
        resolver.clone(),
        RouterConfig {
            cache_ttl: Duration::from_millis(100),
            watch_changes: false,
            ..RouterConfig::default()
        },
    );
    let org: OrgId = "801".parse().unwrap();
    for _ in 0..3 {
        drop(router.get(&org).await.unwrap());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(router.stats().connections_opened, 1, "{:?}", router.stats());
    cluster
        .psql("postgres", "ALTER ROLE app_user PASSWORD 'rotated'")
        .unwrap();
    let mut rotated = info(&cluster, "801", "kept", TenantStatus::Active);
    rotated.password = Some("rotated".into());
    resolver.set(rotated);
    drop(router.get(&org).await.unwrap());
    assert_eq!(router.stats().connections_opened, 2, "{:?}", router.stats());
}
