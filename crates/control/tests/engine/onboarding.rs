use std::time::Duration;

use tenancy_control::Onboarded;
use tenancy_core::{ErrorCode, OperationState, TenantStatus, UpdateTenant};

use crate::helpers::*;
use tenancy_testkit::TestFleet;

#[tokio::test]
async fn onboarding_clones_the_template_with_its_schema_and_version() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let tenant = onboard(&engine, request("263014839178313731", "Acme Corp")).await;

    assert_eq!(tenant.status, TenantStatus::Active);
    assert_eq!(tenant.slug.as_str(), "acme_corp");
    assert_eq!(tenant.db_name.as_str(), "tenant_acme_corp");
    let latest = tenancy_control::migrate::latest_template_version();
    assert_eq!(tenant.schema_version, Some(latest));

    let cluster = fleet.cluster("pg-1");
    let tables = |db: &str| {
        cluster
            .psql(db, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")
            .unwrap()
    };
    assert_eq!(tables("tenant_acme_corp"), tables("tenant_template"));
    assert!(tables("tenant_acme_corp").contains("survey_answers"));
    assert_eq!(
        cluster
            .psql(
                "tenant_acme_corp",
                "SELECT max(version) FROM refinery_schema_history"
            )
            .unwrap(),
        latest.to_string()
    );

    // The tenant role can use its database.
    let mut conn = connect_own(&engine, cluster, &tenant).await.unwrap();
    sqlx::query("INSERT INTO clients (name) VALUES ('first client')")
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_repeated_request_makes_nothing_new_and_a_different_one_conflicts() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let first = onboard(&engine, request("1001", "Globex")).await;

    match engine
        .onboard(request("1001", "Globex"), &actor())
        .await
        .unwrap()
    {
        Onboarded::Existing { tenant } => assert_eq!(tenant, first),
        other => panic!("expected the existing tenant, got {other:?}"),
    }
    let err = engine
        .onboard(request("1001", "Globex Renamed"), &actor())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TenantExists, "{err}");
    assert_eq!(fleet.tenant_databases("pg-1"), ["tenant_globex"]);
    let ops: i64 = sqlx::query_scalar("SELECT count(*) FROM operations")
        .fetch_one(&mut registry(&fleet).await)
        .await
        .unwrap();
    assert_eq!(ops, 1);
}

/// The same create request stays "the same" after the tenant was renamed or re-tiered.
#[tokio::test]
async fn a_repeated_request_is_recognized_after_a_rename_and_a_retier() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let original = request("1002", "Initrode");
    onboard(&engine, original.clone()).await;
    let update = UpdateTenant {
        name: Some("Initrode Global".parse().unwrap()),
        tier: Some("business".parse().unwrap()),
    };
    engine
        .update_tenant(&org("1002"), &update, &actor())
        .await
        .unwrap();

    match engine.onboard(original, &actor()).await.unwrap() {
        Onboarded::Existing { tenant } => {
            assert_eq!(tenant.name.as_str(), "Initrode Global");
            assert_eq!(tenant.tier.as_str(), "business");
        }
        other => panic!("expected the existing tenant, got {other:?}"),
    }
    let err = engine
        .onboard(request("1002", "Initrode Global"), &actor())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TenantExists, "{err}");
}

#[tokio::test]
async fn colliding_names_get_distinct_slugs_and_explicit_slugs_do_not() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let a = onboard(&engine, request("2001", "Initech")).await;
    let b = onboard(&engine, request("2002", "INITECH!")).await;
    assert_eq!(a.db_name.as_str(), "tenant_initech");
    assert_eq!(b.db_name.as_str(), "tenant_initech_2");

    let mut explicit = request("2003", "Other");
    explicit.slug = Some("initech".parse().unwrap());
    let err = engine.onboard(explicit, &actor()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::SlugTaken, "{err}");
    assert_eq!(fleet.tenant_databases("pg-1").len(), 2);
}

#[tokio::test]
async fn two_engines_racing_over_100_onboardings_make_exactly_100_databases() {
    let fleet = TestFleet::single().unwrap();
    let first = engine(&fleet).await;
    let second = engine(&fleet).await;
    let workers = [first.run_workers(), second.run_workers()];

    // Every request is sent to both engines, concurrently: 200 requests for 100 organizations.
    let requests = (0..100).flat_map(|i| {
        let req = request(&format!("9{i:05}"), &format!("Race Org {i}"));
        [(first.clone(), req.clone()), (second.clone(), req)]
    });
    let results = futures::future::join_all(
        requests.map(|(engine, req)| async move { engine.onboard(req, &actor()).await }),
    )
    .await;
    assert!(
        results.iter().all(Result::is_ok),
        "{:?}",
        results.iter().find(|r| r.is_err())
    );

    for i in 0..100 {
        wait_status(
            &first,
            &org(&format!("9{i:05}")),
            TenantStatus::Active,
            Duration::from_secs(120),
        )
        .await;
    }
    for w in workers {
        w.shutdown().await;
    }
    assert_eq!(fleet.tenant_databases("pg-1").len(), 100);
    assert_eq!(fleet.tenant_roles("pg-1").len(), 100);
    let ops: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM operations GROUP BY state")
            .fetch_all(&mut registry(&fleet).await)
            .await
            .unwrap();
    assert_eq!(
        ops,
        vec![(OperationState::Succeeded.as_str().to_owned(), 100)]
    );
}

/// An onboarding that waits runs its provisioning in its own process at once: no worker is woken
/// (no notification of a queued operation) and none would look (they poll once an hour here),
/// yet it is active within the wait, in one attempt.
/// Beyond the process's run slots (one per worker), waiting onboardings fall back to the
/// workers and end active too.
#[tokio::test]
async fn a_waiting_onboarding_runs_at_once_in_its_own_process() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    config.engine.poll_interval = Duration::from_secs(3600);
    config.engine.workers = 1;
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    let workers = engine.run_workers();
    let mut queued = sqlx::postgres::PgListener::connect(&fleet.registry_url())
        .await
        .unwrap();
    queued.listen("tenancy_operations").await.unwrap();

    let waited = engine
        .onboard_and_wait(
            request("9801", "Right Away"),
            &actor(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let Onboarded::Created { tenant, operation } = waited else {
        panic!("a new tenant");
    };
    assert_eq!(operation.state, OperationState::Succeeded);
    assert_eq!(operation.attempts, 1);
    assert_eq!(tenant.status, TenantStatus::Active);
    while let Ok(notification) =
        tokio::time::timeout(Duration::from_millis(300), queued.recv()).await
    {
        assert_ne!(
            notification.unwrap().payload(),
            operation.id.to_string(),
            "queued for the workers"
        );
    }
    connect_own(&engine, fleet.cluster("pg-1"), &tenant)
        .await
        .unwrap();

    let actor = actor();
    let waits = (0..3).map(|i| {
        engine.onboard_and_wait(
            request(&format!("981{i}"), &format!("Together {i}")),
            &actor,
            Duration::from_secs(60),
        )
    });
    for waited in futures::future::join_all(waits).await {
        let Onboarded::Created { tenant, operation } = waited.unwrap() else {
            panic!("a new tenant");
        };
        assert_eq!(operation.state, OperationState::Succeeded, "{operation:?}");
        assert_eq!(tenant.status, TenantStatus::Active);
    }
    workers.shutdown().await;
}
