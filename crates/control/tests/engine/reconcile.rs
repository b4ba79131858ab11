use std::time::Duration;

use sqlx::Connection;
use tenancy_control::{FindingKind, Repair};
use tenancy_core::{OperationKind, OperationState, SuspendedBy, TenantStatus};
use tenancy_testkit::{TestFleet, eventually};

use crate::helpers::*;

/// The reconciler checks every tenant against its server: it reports, then repairs through
/// `converge` operations (never recreating a database), marks a tenant whose database is gone
/// as failed, and drops orphan roles only when told to repair everything.
#[tokio::test]
async fn the_reconciler_verifies_every_tenant_and_never_invents_data() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let kept = onboard(&engine, request("8001", "Kept")).await;
    let lost_db = onboard(&engine, request("8002", "Lost Db")).await;
    let lost_role = onboard(&engine, request("8003", "Lost Role")).await;
    let reopened = onboard(&engine, request("8005", "Reopened")).await;
    let rekeyed = onboard(&engine, request("8006", "Rekeyed")).await;
    let promoted = onboard(&engine, request("8007", "Promoted")).await;
    let op = engine
        .suspend(&reopened.org_id, SuspendedBy::Platform, &actor())
        .await
        .unwrap();
    engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        engine.reconcile(Repair::Nothing).await.unwrap().is_empty(),
        "a clean fleet has no drift"
    );

    let cluster = fleet.cluster("pg-1");
    // A role holds privileges in its own database: they go first.
    cluster
        .psql("tenant_lost_role", "DROP OWNED BY tenant_lost_role")
        .unwrap();
    for sql in [
        "DROP DATABASE tenant_lost_db",
        "DROP ROLE tenant_lost_role",
        "CREATE DATABASE tenant_stray",
        "CREATE ROLE tenant_ghost",
        // An operator's mistake, or an attacker's: the suspended tenant can log in again.
        "ALTER ROLE tenant_reopened LOGIN",
        "GRANT CONNECT ON DATABASE tenant_reopened TO tenant_reopened",
        "ALTER ROLE tenant_promoted CREATEDB",
        // A database from before tags (its converge's lockdown tags it).
        "COMMENT ON DATABASE tenant_kept IS NULL",
    ] {
        cluster.psql("postgres", sql).unwrap();
    }
    // The tenant changes its own password (its routers would fail, undetected before).
    let mut own = connect_own(&engine, cluster, &rekeyed).await.unwrap();
    sqlx::raw_sql("ALTER ROLE CURRENT_USER PASSWORD 'hijacked-by-the-tenant'")
        .execute(&mut own)
        .await
        .unwrap();
    own.close().await.unwrap();
    // A tenant stuck in provisioning with no operation (as if its operation row were lost).
    sqlx::query(
        "INSERT INTO tenants (org_id, name, slug, db_name, role_name, region, tier, status, request)
         VALUES ('8004', 'Stuck', 'stuck', 'tenant_stuck', 'tenant_stuck', 'local', 'free', 'provisioning', '{}')",
    )
    .execute(&mut registry(&fleet).await)
    .await
    .unwrap();

    let report = engine.reconcile(Repair::Nothing).await.unwrap();
    let mut kinds: Vec<(String, FindingKind)> =
        report.iter().map(|f| (f.name.clone(), f.kind)).collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        kinds,
        vec![
            ("tenant_ghost".to_owned(), FindingKind::OrphanRole),
            ("tenant_kept".to_owned(), FindingKind::Untagged),
            ("tenant_lost_db".to_owned(), FindingKind::MissingDatabase),
            ("tenant_lost_role".to_owned(), FindingKind::MissingRole),
            ("tenant_promoted".to_owned(), FindingKind::RoleDrift),
            ("tenant_rekeyed".to_owned(), FindingKind::PasswordDrift),
            ("tenant_reopened".to_owned(), FindingKind::AccessMismatch),
            ("tenant_stray".to_owned(), FindingKind::OrphanDatabase),
            ("tenant_stuck".to_owned(), FindingKind::StuckTenant),
        ]
    );
    assert!(report.iter().all(|f| !f.repaired), "report only");

    // The periodic repair: tenants converge, the lost database's tenant is failed.
    let repaired = engine.reconcile(Repair::Tenants).await.unwrap();
    for f in &repaired {
        let expected = !matches!(
            f.kind,
            FindingKind::OrphanDatabase | FindingKind::OrphanRole
        );
        assert_eq!(f.repaired, expected, "{f:?}");
    }
    for tenant in [&kept, &lost_role, &reopened, &rekeyed, &promoted] {
        eventually(Duration::from_secs(30), "converged", || async {
            let ops = engine.tenant_operations(&tenant.org_id, 1).await.unwrap();
            (ops[0].kind == OperationKind::Converge && ops[0].state == OperationState::Succeeded)
                .then_some(())
        })
        .await;
    }
    wait_status(
        &engine,
        &org("8004"),
        TenantStatus::Active,
        Duration::from_secs(30),
    )
    .await;
    let failed = engine.tenant(&lost_db.org_id).await.unwrap();
    assert_eq!(failed.status, TenantStatus::Failed);
    assert!(
        failed.status_reason.unwrap().contains("never recreated"),
        "the reason says what happened"
    );
    assert!(
        !fleet
            .tenant_databases("pg-1")
            .contains(&"tenant_lost_db".to_owned()),
        "no empty database was invented"
    );
    for tenant in [&kept, &lost_role, &rekeyed, &promoted] {
        connect_own(&engine, cluster, tenant)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", tenant.db_name));
    }
    let err = connect_own(&engine, cluster, &reopened).await.unwrap_err();
    assert!(err.to_string().contains("not permitted to log in"), "{err}");
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT rolcreatedb FROM pg_roles WHERE rolname = 'tenant_promoted'"
            )
            .unwrap(),
        "f"
    );
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database
                 WHERE datname = 'tenant_kept'"
            )
            .unwrap(),
        "tenancy:org_id=8001"
    );
    assert!(
        fleet
            .tenant_roles("pg-1")
            .contains(&"tenant_ghost".to_owned())
    );

    // Only an explicit full repair drops orphan roles; orphan databases always stay.
    let left = engine.reconcile(Repair::Everything).await.unwrap();
    let kinds: Vec<FindingKind> = left.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [FindingKind::OrphanDatabase, FindingKind::OrphanRole],
        "{left:?}"
    );
    assert!(
        !fleet
            .tenant_roles("pg-1")
            .contains(&"tenant_ghost".to_owned())
    );
    assert!(
        fleet
            .tenant_databases("pg-1")
            .contains(&"tenant_stray".to_owned())
    );
}
