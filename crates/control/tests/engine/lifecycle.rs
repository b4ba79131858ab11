use std::time::Duration;

use sqlx::Connection;
use tenancy_core::{ErrorCode, OperationState, SuspendedBy, TenantStatus};

use crate::helpers::*;
use tenancy_control::LockName;
use tenancy_testkit::TestFleet;
use tenancy_testkit::eventually;

#[tokio::test]
async fn suspend_refuses_new_connections_and_ends_open_ones_and_resume_restores() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let tenant = onboard(&engine, request("3001", "Umbrella")).await;
    let cluster = fleet.cluster("pg-1");
    let mut open = connect_own(&engine, cluster, &tenant).await.unwrap();

    let op = engine
        .suspend(&tenant.org_id, SuspendedBy::Platform, &actor())
        .await
        .unwrap();
    let op = engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded);
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().status,
        TenantStatus::Suspended
    );

    let err = connect_own(&engine, cluster, &tenant).await.unwrap_err();
    assert!(err.to_string().contains("not permitted to log in"), "{err}");
    assert!(
        sqlx::query("SELECT 1").execute(&mut open).await.is_err(),
        "open session was ended"
    );

    // Suspending again is refused with a clear reason; resuming restores access.
    let err = engine
        .suspend(&tenant.org_id, SuspendedBy::Platform, &actor())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidState, "{err}");
    let op = engine
        .resume(&tenant.org_id, SuspendedBy::Platform, &actor())
        .await
        .unwrap();
    engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().status,
        TenantStatus::Active
    );
    let mut conn = connect_own(&engine, cluster, &tenant).await.unwrap();
    sqlx::query("SELECT count(*) FROM tickets")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn delete_keeps_the_database_until_purge_then_drops_everything() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let tenant = onboard(&engine, request("3002", "Soylent")).await;
    let cluster = fleet.cluster("pg-1");
    let db = tenant.db_name.as_str();

    let op = engine
        .delete(&tenant.org_id, tenancy_control::Cascade::Refuse, &actor())
        .await
        .unwrap();
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().status,
        TenantStatus::Deleting,
        "refused at once"
    );
    engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().status,
        TenantStatus::Deleted
    );
    assert_eq!(
        fleet.tenant_databases("pg-1"),
        [db],
        "kept for the retention period"
    );
    assert!(connect_own(&engine, cluster, &tenant).await.is_err());

    let op = engine.purge(&tenant.org_id, &actor()).await.unwrap();
    let op = engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded);
    assert!(fleet.tenant_databases("pg-1").is_empty());
    assert!(fleet.tenant_roles("pg-1").is_empty());
    assert!(engine.tenant(&tenant.org_id).await.is_err());

    // Every step left an audit event.
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_events WHERE org_id = $1 ORDER BY id")
            .bind("3002")
            .fetch_all(&mut registry(&fleet).await)
            .await
            .unwrap();
    assert_eq!(
        actions,
        [
            "tenant.create",
            "tenant.active",
            "tenant.deprovision",
            // The deletion's safeguard (`[backups] before_delete`), erased by the purge.
            "tenant.backup",
            "tenant.deleted",
            "tenant.purge",
            "tenant.backups_shredded",
            "tenant.purged"
        ]
    );
    // The org can be onboarded afresh.
    let again = onboard(&engine, request("3002", "Soylent")).await;
    assert_eq!(again.status, TenantStatus::Active);
}

/// A purge drops only what is tagged for its tenant: after the registry and a server diverged
/// (a registry restored from a backup, say), a database or role of the tenant's name that is
/// tagged for another organization, or not at all, is left as it is and the purge fails with
/// the reason.
#[tokio::test]
async fn a_purge_never_drops_a_database_or_role_that_is_not_its_tenants() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let cluster = fleet.cluster("pg-1");
    // (organization, name, what changed on the server, whether the database is still the
    // tenant's, and so dropped)
    for (org, name, retag, own_database) in [
        (
            "3101",
            "Initrode",
            "COMMENT ON DATABASE tenant_initrode IS 'tenancy:org_id=9999'",
            false,
        ),
        (
            "3102",
            "Umbrella",
            "COMMENT ON ROLE tenant_umbrella IS NULL",
            true,
        ),
    ] {
        let tenant = onboard(&engine, request(org, name)).await;
        delete_and_wait(&engine, &tenant.org_id).await;
        // What is on the server now belongs to someone else (or to no one the engine knows).
        cluster.psql("postgres", retag).unwrap();
        let op = engine.purge(&tenant.org_id, &actor()).await.unwrap();
        let op = engine
            .wait_operation(op.id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(op.state, OperationState::Failed, "{op:?}");
        assert_eq!(op.last_error_code, Some(ErrorCode::InvalidState), "{op:?}");
        assert!(
            op.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("not the tenant's"),
            "{op:?}"
        );
        let db = tenant.db_name.to_string();
        assert_eq!(
            fleet.tenant_databases("pg-1").contains(&db),
            !own_database,
            "{name}: only the tenant's own database is dropped"
        );
        assert!(
            fleet.tenant_roles("pg-1").contains(&db),
            "{name}: role kept"
        );
    }
}

#[tokio::test]
async fn retention_expiry_purges_automatically() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    config.engine.retention = Duration::from_millis(100);
    config.engine.reconcile_interval = Duration::from_millis(300);
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("3003", "Hooli")).await;
    delete_and_wait(&engine, &tenant.org_id).await;
    wait_gone(&engine, &tenant.org_id).await;
    assert!(fleet.tenant_databases("pg-1").is_empty());
}

#[tokio::test]
async fn a_busy_template_delays_onboarding_with_a_clear_reason_but_does_not_fail_it() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let cluster = fleet.cluster("pg-1");
    let squatter = sqlx::PgConnection::connect(&cluster.url("tenant_template"))
        .await
        .unwrap();

    let onboarded = engine
        .onboard(request("3004", "Vandelay"), &actor())
        .await
        .unwrap();
    let tenancy_control::Onboarded::Created { operation, .. } = onboarded else {
        panic!()
    };
    // PostgreSQL itself waits 5 s for other sessions before refusing the clone.
    let op = eventually(Duration::from_secs(30), "an error is recorded", || async {
        let op = engine.operation(operation.id).await.unwrap();
        op.last_error.is_some().then_some(op)
    })
    .await;
    assert!(
        op.last_error
            .as_deref()
            .unwrap()
            .contains("template database on server pg-1 is in use"),
        "{op:?}"
    );
    assert_eq!(
        engine.tenant(&org("3004")).await.unwrap().status,
        TenantStatus::Provisioning
    );

    squatter.close().await.unwrap();
    let op = engine
        .wait_operation(operation.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    assert_eq!(
        engine.tenant(&org("3004")).await.unwrap().status,
        TenantStatus::Active
    );
}

#[tokio::test]
async fn a_failed_tenant_can_be_retried_after_the_cause_is_fixed() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    config.engine.max_attempts = 2;
    config.servers[0].capacity = 0;
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());

    let failed = onboard_until_failed(&engine, "3005", "Wayne Ent").await;
    let reason = failed.status_reason.unwrap();
    assert!(
        reason.contains("no active server with free capacity in region local"),
        "{reason}"
    );
    assert!(fleet.tenant_databases("pg-1").is_empty());

    sqlx::query("UPDATE database_servers SET capacity = 10")
        .execute(&mut registry(&fleet).await)
        .await
        .unwrap();
    retry_until_active(&engine, &org("3005")).await;
}

#[tokio::test]
async fn a_database_or_role_that_is_not_the_tenants_is_never_adopted() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let cluster = fleet.cluster("pg-1");
    cluster
        .psql(
            "postgres",
            "CREATE ROLE tenant_stark SUPERUSER CREATEDB CREATEROLE",
        )
        .unwrap();
    cluster
        .psql("postgres", "CREATE DATABASE tenant_wayne")
        .unwrap();
    for (org_id, name, what) in [("3006", "Stark", "role"), ("3007", "Wayne", "database")] {
        let failed = onboard_until_failed(&engine, org_id, name).await;
        let reason = failed.status_reason.unwrap();
        assert!(
            reason.contains("never adopted") && reason.contains(what),
            "{reason}"
        );
    }
    // Untouched: the squatters keep what they had, and got no tag.
    assert_eq!(
        cluster.psql("postgres", "SELECT rolsuper, shobj_description(oid, 'pg_authid') IS NULL FROM pg_roles WHERE rolname = 'tenant_stark'").unwrap(),
        "t|t"
    );
    assert_eq!(
        cluster.psql("postgres", "SELECT shobj_description(oid, 'pg_database') IS NULL FROM pg_database WHERE datname = 'tenant_wayne'").unwrap(),
        "t"
    );
    // The clone made while the squatted role was refused is gone.
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'tenant_stark'"
            )
            .unwrap(),
        "0"
    );
}

#[tokio::test]
async fn a_registry_lock_has_one_holder_until_released_or_its_holder_is_gone() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine(&fleet).await;
    let held = engine
        .try_lock(&LockName::Usage)
        .await
        .unwrap()
        .expect("free");
    assert!(engine.try_lock(&LockName::Usage).await.unwrap().is_none());
    assert!(
        engine
            .try_lock(&LockName::Reconcile)
            .await
            .unwrap()
            .is_some()
    );
    held.release().await;
    let again = engine
        .try_lock(&LockName::Usage)
        .await
        .unwrap()
        .expect("free at once once released");
    // A holder that disappears without releasing (a process killed) frees the lock too.
    drop(again);
    eventually(Duration::from_secs(10), "the lock is freed", || async {
        engine.try_lock(&LockName::Usage).await.unwrap().map(drop)
    })
    .await;
}

/// Purging a tenant that is another's parent is refused before anything is dropped.
#[tokio::test]
async fn purging_a_parent_is_refused_before_anything_is_dropped() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let mut agency = request("3101", "Parent Agency");
    agency.kind = Some(tenancy_core::TenantKind::Agency);
    let parent = onboard(&engine, agency).await;
    let mut client = request("3102", "Client Of Parent");
    client.parent_org_id = Some(parent.org_id.clone());
    let client = onboard(&engine, client).await;
    // A deleted client keeps its row (and its database) until purged: the agency may be
    // deleted, not purged.
    for org_id in [&client.org_id, &parent.org_id] {
        let op = engine
            .delete(org_id, tenancy_control::Cascade::Refuse, &actor())
            .await
            .unwrap();
        engine
            .wait_operation(op.id, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let err = engine.purge(&parent.org_id, &actor()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HasClients, "{err}");
    assert!(
        fleet
            .tenant_databases("pg-1")
            .contains(&"tenant_parent_agency".to_owned()),
        "nothing was dropped"
    );
}
