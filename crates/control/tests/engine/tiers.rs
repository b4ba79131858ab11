//! Tiers come from the configuration: any names, a default for tenants created without one,
//! limits applied to the tenant's role, unknown tiers refused, removed tiers in use refused at
//! start.

use std::time::Duration;

use sqlx::Row;
use tenancy_control::{FindingKind, Repair};
use tenancy_core::{ErrorCode, UpdateTenant};
use tenancy_testkit::TestFleet;

use crate::helpers::*;

/// What a session of the tenant's role gets, as PostgreSQL shows it.
async fn session_limits(
    engine: &tenancy_control::Engine,
    fleet: &TestFleet,
    tenant: &tenancy_core::Tenant,
) -> (String, String, String) {
    let mut conn = connect_own(engine, fleet.cluster("pg-1"), tenant)
        .await
        .unwrap();
    let mut show = async |name: &str| -> String {
        sqlx::query(sqlx::AssertSqlSafe(format!("SHOW {name}")))
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0)
    };
    (
        show("statement_timeout").await,
        show("idle_in_transaction_session_timeout").await,
        show("temp_file_limit").await,
    )
}

#[tokio::test]
async fn a_tenant_gets_the_default_tier_its_limits_and_a_retier_changes_them() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let tenant = onboard(&engine, request("7001", "Tiered")).await;
    assert_eq!(tenant.tier.as_str(), "free");
    assert_eq!(
        session_limits(&engine, &fleet, &tenant).await,
        ("15s".into(), "1min".into(), "1GB".into())
    );

    retier(&engine, &tenant.org_id, "business").await;
    assert_eq!(
        session_limits(&engine, &fleet, &tenant).await,
        ("1min".into(), "5min".into(), "20GB".into())
    );
    let limit = fleet
        .cluster("pg-1")
        .psql(
            "postgres",
            &format!(
                "SELECT rolconnlimit FROM pg_roles WHERE rolname = '{}'",
                tenant.role_name()
            ),
        )
        .unwrap();
    assert_eq!(limit.trim(), "60");
    assert_eq!(
        engine
            .connection_info(&tenant.org_id)
            .await
            .unwrap()
            .pool_size,
        10
    );

    // A well-formed tier the configuration does not define is refused, and changes nothing.
    let platinum: tenancy_core::Tier = "platinum".parse().unwrap();
    let mut create = request("7002", "Platinum Corp");
    create.tier = Some(platinum.clone());
    let refused = engine.onboard(create, &actor()).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::ValidationFailed, "{refused}");
    assert!(
        refused.to_string().contains("business, enterprise, free"),
        "{refused}"
    );
    let refused = engine
        .update_tenant(
            &tenant.org_id,
            &UpdateTenant {
                name: None,
                tier: Some(platinum),
            },
            &actor(),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::ValidationFailed, "{refused}");
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().tier.as_str(),
        "business"
    );
    assert!(engine.tenant(&org("7002")).await.is_err());
}

#[tokio::test]
async fn the_engine_refuses_to_start_without_a_tier_tenants_still_have() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let mut create = request("7101", "Enterprise Co");
    create.tier = Some("enterprise".parse().unwrap());
    onboard(&engine, create).await;

    let mut shrunk = config(&fleet);
    shrunk.tiers.retain(|tier, _| tier.as_str() != "enterprise");
    let refused = tenancy_control::Engine::start(shrunk).await.err().unwrap();
    assert!(
        refused.to_string().contains("enterprise (1 tenants)"),
        "{refused}"
    );
    // With the tier back, it starts.
    tenancy_control::Engine::start(config(&fleet))
        .await
        .unwrap();
}

/// Changing a tier's figures and restarting re-tiers every tenant of that tier, and only those;
/// a tenant busy with another operation is taken at a later round.
#[tokio::test]
async fn changed_tier_figures_roll_out_to_every_tenant_of_the_tier_after_a_restart() {
    let fleet = TestFleet::single().unwrap();
    let first = engine(&fleet).await;
    let workers = first.run_workers();
    let free = onboard(&first, request("7201", "Free One")).await;
    let mut create = request("7202", "Business One");
    create.tier = Some("business".parse().unwrap());
    let business = onboard(&first, create).await;
    // Everything rolled out with the first figures (the tenants were provisioned with them).
    tenancy_testkit::eventually(Duration::from_secs(30), "first rollout settles", || async {
        first
            .roll_out_tiers()
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    workers.shutdown().await;
    let retiers = |engine: &tenancy_control::Engine, org_id: &tenancy_core::OrgId| {
        let (engine, org_id) = (engine.clone(), org_id.clone());
        async move { operations_of_kind(&engine, &org_id, tenancy_core::OperationKind::Retier).await }
    };
    // (A first rollout may have re-tiered them: no figures were recorded before it.)
    let (free_before, business_before) = (
        retiers(&first, &free.org_id).await,
        retiers(&first, &business.org_id).await,
    );

    let mut changed = config(&fleet);
    let free_tier = changed
        .tiers
        .get_mut(&"free".parse::<tenancy_core::Tier>().unwrap())
        .unwrap();
    free_tier.statement_timeout = Duration::from_secs(20);
    free_tier.pool_size = 3; // not a role figure
    // Starting with the changed figures queues the free tenant's retier, and only that.
    let second = tenancy_control::Engine::start(changed).await.unwrap();
    let pending: Vec<(String, i64)> = second
        .tier_status()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| !t.rolled_out)
        .map(|t| (t.tier.to_string(), t.retiers_open))
        .collect();
    assert_eq!(pending, [("free".to_owned(), 1)]);
    std::mem::forget(second.run_workers());
    tenancy_testkit::eventually(
        Duration::from_secs(30),
        "the free tenant's role has 20s",
        || async {
            let limits = session_limits(&second, &fleet, &free).await;
            (limits.0 == "20s").then_some(())
        },
    )
    .await;
    assert_eq!(session_limits(&second, &fleet, &business).await.0, "1min");
    assert_eq!(retiers(&second, &free.org_id).await, free_before + 1);
    assert_eq!(
        retiers(&second, &business.org_id).await,
        business_before,
        "other tiers untouched"
    );
    assert!(
        second.roll_out_tiers().await.unwrap().is_empty(),
        "done once"
    );
}

/// Whether a new session of the tenant's role may create a temporary table (after lifting the
/// read-only default, which is the tenant's own to lift).
async fn creates_temp_table(
    engine: &tenancy_control::Engine,
    fleet: &TestFleet,
    tenant: &tenancy_core::Tenant,
) -> bool {
    let mut conn = connect_own(engine, fleet.cluster("pg-1"), tenant)
        .await
        .unwrap();
    sqlx::raw_sql("SET default_transaction_read_only = off")
        .execute(&mut conn)
        .await
        .unwrap();
    match sqlx::raw_sql("CREATE TEMPORARY TABLE scratch (id int)")
        .execute(&mut conn)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            assert!(
                e.to_string()
                    .contains("permission denied to create temporary tables"),
                "{e}"
            );
            false
        }
    }
}

/// Temporary tables count against neither `temp_file_limit` nor the storage quota, so a tenant
/// role may create them only when its tier says `temp_tables = true`, and only while it is
/// active and writable; the reconciler finds a role that holds them against that and converges
/// it (security review 2, N19).
#[tokio::test]
async fn temporary_tables_are_the_tiers_choice_and_never_a_read_only_tenants() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    add_tier(&mut config, "scratch", |scratch| scratch.temp_tables = true);
    add_tier(&mut config, "full", |full| {
        full.temp_tables = true;
        full.storage_quota = Some(bytesize::ByteSize::mib(4));
    });
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());

    let tenant = onboard(&engine, request("7401", "Temp Free")).await;
    assert!(!creates_temp_table(&engine, &fleet, &tenant).await);
    let mut create = request("7402", "Temp Scratch");
    create.tier = Some("scratch".parse().unwrap());
    let scratch = onboard(&engine, create).await;
    assert!(creates_temp_table(&engine, &fleet, &scratch).await);

    // A re-tier gives and takes them.
    retier(&engine, &tenant.org_id, "scratch").await;
    assert!(creates_temp_table(&engine, &fleet, &tenant).await);
    retier(&engine, &tenant.org_id, "free").await;
    assert!(!creates_temp_table(&engine, &fleet, &tenant).await);

    // Read-only (over its storage quota) takes them; writable again gives them back.
    retier(&engine, &scratch.org_id, "full").await;
    let round = engine.sample_usage().await.unwrap();
    assert_eq!(round.made_read_only, std::slice::from_ref(&scratch.org_id));
    assert!(!creates_temp_table(&engine, &fleet, &scratch).await);
    retier(&engine, &scratch.org_id, "scratch").await;
    let round = engine.sample_usage().await.unwrap();
    assert_eq!(round.made_writable, std::slice::from_ref(&scratch.org_id));
    assert!(creates_temp_table(&engine, &fleet, &scratch).await);

    // A suspension takes them, the resumption gives them back.
    let actor = tenancy_control::Actor::named("test");
    let by = tenancy_core::SuspendedBy::Platform;
    let op = engine.suspend(&scratch.org_id, by, &actor).await.unwrap();
    engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    let op = engine.resume(&scratch.org_id, by, &actor).await.unwrap();
    engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(creates_temp_table(&engine, &fleet, &scratch).await);

    // Granted by hand against the tier: found, and taken back by the repair.
    fleet
        .cluster("pg-1")
        .psql(
            "postgres",
            &format!(
                "GRANT TEMPORARY ON DATABASE {} TO {}",
                tenant.db_name,
                tenant.role_name()
            ),
        )
        .unwrap();
    let found = engine.reconcile(Repair::Nothing).await.unwrap();
    assert!(
        found.iter().any(|f| f.kind == FindingKind::RoleDrift
            && f.org_id.as_ref() == Some(&tenant.org_id)
            && f.detail.contains("temporary tables")),
        "{found:?}"
    );
    engine.reconcile(Repair::Tenants).await.unwrap();
    tenancy_testkit::eventually(Duration::from_secs(30), "the repair converges", || async {
        let ops = engine.tenant_operations(&tenant.org_id, 10).await.unwrap();
        let converged = ops.iter().any(|op| {
            op.kind == tenancy_core::OperationKind::Converge
                && op.state == tenancy_core::OperationState::Succeeded
        });
        converged.then_some(())
    })
    .await;
    assert!(engine.reconcile(Repair::Nothing).await.unwrap().is_empty());
    assert!(!creates_temp_table(&engine, &fleet, &tenant).await);
}
