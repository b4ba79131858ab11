use std::time::Duration;

use tenancy_control::Repair;
use tenancy_control::faults::Moment;
use tenancy_core::{OperationKind, OperationState, Step, SuspendedBy, TenantStatus};

use crate::helpers::*;
use tenancy_testkit::TestFleet;
use tenancy_testkit::eventually;

#[tokio::test]
async fn a_worker_dying_in_any_provisioning_step_is_resumed_by_another_to_the_same_end() {
    let fleet = TestFleet::single().unwrap();
    // Onboarding placed the tenant: its operation starts at `role`.
    let steps = [Step::Role, Step::Database, Step::Lockdown, Step::Activate];
    let mut points: Vec<(Step, Moment)> = steps.iter().map(|s| (*s, Moment::After)).collect();
    points.push((Step::Role, Moment::Before));
    points.push((Step::Database, Moment::Before));

    for (i, (step, moment)) in points.into_iter().enumerate() {
        let org_id = format!("7{i:03}");
        let dying = request(&org_id, &format!("Crash {i}"));
        onboard_and_die(config(&fleet), step, moment, dying).await;

        // Another process takes over once the dead worker's lease expires.
        let rescuer = engine(&fleet).await;
        let workers = rescuer.run_workers();
        let tenant = wait_status(
            &rescuer,
            &org(&org_id),
            TenantStatus::Active,
            Duration::from_secs(30),
        )
        .await;
        workers.shutdown().await;
        assert_eq!(
            tenant.schema_version,
            Some(tenancy_control::migrate::latest_template_version()),
            "{step:?}"
        );
        let op = rescuer
            .latest_operation(&org(&org_id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(op.state, OperationState::Succeeded);
        if step != Step::Activate {
            assert!(
                op.attempts >= 2,
                "{step:?}/{moment:?}: the rescuer ran it ({} attempts)",
                op.attempts
            );
        }
        let mut conn = connect_own(&rescuer, fleet.cluster("pg-1"), &tenant)
            .await
            .unwrap_or_else(|e| panic!("{step:?}/{moment:?}: {e}"));
        sqlx::query("SELECT count(*) FROM members")
            .execute(&mut conn)
            .await
            .unwrap();
    }

    // Exactly one database and one role per organization, nothing else.
    let expected: Vec<String> = (0..6).map(|i| format!("tenant_crash_{i}")).collect();
    assert_eq!(fleet.tenant_databases("pg-1"), expected);
    assert_eq!(fleet.tenant_roles("pg-1"), expected);
    let engine = engine(&fleet).await;
    assert!(engine.reconcile(Repair::Nothing).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_worker_dying_while_purging_is_resumed_and_leaves_nothing_behind() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine(&fleet).await;
    let workers = engine.run_workers();
    let t = onboard(&engine, request("7100", "Purged")).await;
    delete_and_wait(&engine, &t.org_id).await;
    workers.shutdown().await;

    let (doomed, crashed) = doomed_engine(
        config(&fleet),
        OperationKind::Purge,
        Step::DropDatabase,
        Moment::After,
    )
    .await;
    let doomed_workers = doomed.run_workers();
    doomed.purge(&t.org_id, &actor()).await.unwrap();
    wait_crash(&crashed).await;
    doomed_workers.shutdown().await;
    assert!(fleet.tenant_databases("pg-1").is_empty());
    assert_eq!(
        fleet.tenant_roles("pg-1"),
        ["tenant_purged"],
        "role not dropped yet"
    );

    let workers = engine.run_workers();
    wait_gone(&engine, &t.org_id).await;
    workers.shutdown().await;
    assert!(fleet.tenant_roles("pg-1").is_empty());
}

#[tokio::test]
async fn shutdown_hands_unfinished_work_back_without_spending_an_attempt() {
    let fleet = TestFleet::single().unwrap();
    let first = engine(&fleet).await;
    // No workers yet: queue work, then start and immediately stop them, then finish elsewhere.
    first
        .onboard(request("7200", "Handback"), &actor())
        .await
        .unwrap();
    let workers = first.run_workers();
    workers.shutdown().await;
    let rescuer = engine(&fleet).await;
    let w = rescuer.run_workers();
    wait_status(
        &rescuer,
        &org("7200"),
        TenantStatus::Active,
        Duration::from_secs(30),
    )
    .await;
    w.shutdown().await;
    assert_eq!(fleet.tenant_databases("pg-1"), ["tenant_handback"]);
}

/// A worker dying in an agency's cascade: the next one runs the step again, and every client is
/// suspended exactly once.
#[tokio::test]
async fn a_cascade_cut_short_by_a_crash_converges_with_each_client_suspended_once() {
    let fleet = TestFleet::single().unwrap();
    let (doomed, crashed) = doomed_engine(
        config(&fleet),
        OperationKind::Suspend,
        Step::CascadeClients,
        Moment::After,
    )
    .await;
    let workers = doomed.run_workers();
    let mut agency = request("7601", "Crashing Agency");
    agency.kind = Some(tenancy_core::TenantKind::Agency);
    let agency = onboard(&doomed, agency).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut client = request(&format!("760{}", i + 2), &format!("Crash Client {i}"));
        client.parent_org_id = Some(agency.org_id.clone());
        clients.push(onboard(&doomed, client).await);
    }
    doomed
        .suspend(&agency.org_id, SuspendedBy::Platform, &actor())
        .await
        .unwrap();
    wait_crash(&crashed).await;
    workers.shutdown().await;

    let rescuer = engine(&fleet).await;
    let workers = rescuer.run_workers();
    wait_status(
        &rescuer,
        &agency.org_id,
        TenantStatus::Suspended,
        Duration::from_secs(30),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the agency's suspend succeeds",
        || async {
            let op = rescuer
                .latest_operation(&agency.org_id)
                .await
                .unwrap()
                .unwrap();
            (op.state == OperationState::Succeeded).then_some(())
        },
    )
    .await;
    for client in &clients {
        eventually(
            Duration::from_secs(30),
            "the client's suspension is done",
            || async {
                let op = rescuer
                    .latest_operation(&client.org_id)
                    .await
                    .unwrap()
                    .unwrap();
                (op.kind == OperationKind::Suspend && op.state == OperationState::Succeeded)
                    .then_some(())
            },
        )
        .await;
        let suspends = operations_of_kind(&rescuer, &client.org_id, OperationKind::Suspend).await;
        assert_eq!(suspends, 1, "{}", client.org_id);
    }
    workers.shutdown().await;
}
