use tenancy_control::FindingKind;
use tenancy_core::TenantStatus;

use crate::helpers::*;
use tenancy_testkit::TestFleet;

#[tokio::test]
async fn the_reconciler_reports_and_repairs_drift() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let kept = onboard(&engine, request("8001", "Kept")).await;
    let lost_db = onboard(&engine, request("8002", "Lost Db")).await;
    let lost_role = onboard(&engine, request("8003", "Lost Role")).await;
    assert!(
        engine.reconcile(false).await.unwrap().is_empty(),
        "a clean fleet has no drift"
    );

    let cluster = fleet.cluster("pg-1");
    cluster
        .psql("postgres", "DROP DATABASE tenant_lost_db")
        .unwrap();
    cluster
        .psql("postgres", "DROP DATABASE tenant_lost_role")
        .unwrap();
    cluster
        .psql("postgres", "DROP ROLE tenant_lost_role")
        .unwrap();
    cluster
        .psql(
            "postgres",
            "CREATE DATABASE tenant_lost_role TEMPLATE tenant_template",
        )
        .unwrap();
    cluster
        .psql("postgres", "CREATE DATABASE tenant_stray")
        .unwrap();
    cluster
        .psql("postgres", "CREATE ROLE tenant_ghost")
        .unwrap();
    // A tenant stuck in provisioning with no operation (as if its operation row were lost).
    sqlx::query("INSERT INTO tenants (org_id, name, slug, db_name, role_name, region, tier, status, request)
                 VALUES ('8004', 'Stuck', 'stuck', 'tenant_stuck', 'tenant_stuck', 'local', 'free', 'provisioning', '{}')")
        .execute(&mut registry(&fleet).await)
        .await
        .unwrap();

    let report = engine.reconcile(false).await.unwrap();
    let mut kinds: Vec<(FindingKind, String)> =
        report.iter().map(|d| (d.kind, d.name.clone())).collect();
    kinds.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        kinds,
        vec![
            (FindingKind::OrphanRole, "tenant_ghost".to_owned()),
            (FindingKind::MissingDatabase, "tenant_lost_db".to_owned()),
            (FindingKind::MissingRole, "tenant_lost_role".to_owned()),
            (FindingKind::OrphanDatabase, "tenant_stray".to_owned()),
            (FindingKind::StuckTenant, "tenant_stuck".to_owned()),
        ]
    );
    assert!(report.iter().all(|d| !d.repaired), "report only");

    let repaired = engine.reconcile(true).await.unwrap();
    assert!(
        repaired
            .iter()
            .all(|d| d.repaired || d.kind == FindingKind::OrphanDatabase),
        "{repaired:?}"
    );
    wait_status(
        &engine,
        &"8004".parse().unwrap(),
        TenantStatus::Active,
        std::time::Duration::from_secs(30),
    )
    .await;
    for t in [&kept, &lost_db, &lost_role] {
        let db = t.db_name.as_str();
        connect_as(&engine, cluster, db, db)
            .await
            .unwrap_or_else(|e| panic!("{db}: {e}"));
    }
    let left = engine.reconcile(false).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        left[0].kind,
        FindingKind::OrphanDatabase,
        "orphan databases are never dropped"
    );
}
