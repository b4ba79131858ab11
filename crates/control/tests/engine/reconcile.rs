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

/// A tenant provisioned between the reconciler's read of its server and its read of the
/// registry is absent from the first and active in the second: it is never marked failed,
/// because the database is asked for again, under the tenant's lock, on its server of now
/// (security review 2, N3). Before, the reconciler failed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_made_while_the_reconciler_runs_is_never_failed() {
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};

    struct Pause {
        paused: Mutex<mpsc::Sender<()>>,
        resume: Mutex<mpsc::Receiver<()>>,
    }
    impl tenancy_control::faults::FaultInjector for Pause {
        fn crash_at(
            &self,
            _: OperationKind,
            _: tenancy_core::Step,
            _: tenancy_control::faults::Moment,
        ) -> bool {
            false
        }
        fn after_inventory(&self, _: &tenancy_core::ServerId) {
            let _ = self.paused.lock().unwrap().send(());
            tokio::task::block_in_place(|| {
                let _ = self
                    .resume
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
            });
        }
    }
    let fleet = TestFleet::single().unwrap();
    let (paused_tx, paused) = mpsc::channel();
    let (resume, resume_rx) = mpsc::channel();
    let pause = Arc::new(Pause {
        paused: Mutex::new(paused_tx),
        resume: Mutex::new(resume_rx),
    });
    let engine = tenancy_control::Engine::start_with_faults(config(&fleet), pause)
        .await
        .unwrap();
    std::mem::forget(engine.run_workers());

    let reconciling = tokio::spawn({
        let engine = engine.clone();
        async move { engine.reconcile(Repair::Tenants).await.unwrap() }
    });
    tokio::task::spawn_blocking(move || paused.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the reconciler read the inventory");
    let tenant = onboard(&engine, request("8601", "Made Meanwhile")).await;
    assert_eq!(tenant.status, TenantStatus::Active);
    resume.send(()).unwrap();
    let report = reconciling.await.unwrap();

    let missing: Vec<_> = report
        .iter()
        .filter(|f| f.kind == FindingKind::MissingDatabase)
        .collect();
    assert!(missing.iter().all(|f| !f.repaired), "{missing:?}");
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().status,
        TenantStatus::Active
    );
}

/// A tenant the reconciler failed because its database was gone has a way back once the
/// database is there again: `retry` converges it and makes it active; while the database is
/// still missing, the retry fails and the tenant stays failed.
#[tokio::test]
async fn a_tenant_failed_for_a_missing_database_is_active_again_when_it_is_back() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let tenant = onboard(&engine, request("8701", "Mislaid")).await;
    let cluster = fleet.cluster("pg-1");
    cluster
        .psql(
            "postgres",
            "ALTER DATABASE tenant_mislaid RENAME TO mislaid_by_hand",
        )
        .unwrap();
    engine.reconcile(Repair::Tenants).await.unwrap();
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().status,
        TenantStatus::Failed
    );

    let op = engine.retry(&tenant.org_id, &actor()).await.unwrap();
    assert_eq!(op.kind, OperationKind::Converge);
    let op = engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Failed, "still missing: {op:?}");
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().status,
        TenantStatus::Failed
    );

    cluster
        .psql(
            "postgres",
            "ALTER DATABASE mislaid_by_hand RENAME TO tenant_mislaid",
        )
        .unwrap();
    let op = engine.retry(&tenant.org_id, &actor()).await.unwrap();
    let op = engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let back = engine.tenant(&tenant.org_id).await.unwrap();
    assert_eq!(back.status, TenantStatus::Active);
    connect_own(&engine, cluster, &back).await.unwrap();
    assert!(engine.reconcile(Repair::Nothing).await.unwrap().is_empty());
}
