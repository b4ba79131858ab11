use std::collections::BTreeMap;
use std::time::Duration;

use tenancy_control::{Engine, Onboarded};
use tenancy_core::{ErrorCode, MoveMode, MoveTenant, OperationState, ServerState, TenantStatus};

use crate::helpers::*;
use tenancy_testkit::TestFleet;

#[tokio::test]
async fn tenants_spread_over_the_servers_of_a_region_and_never_land_on_a_draining_one() {
    let fleet = TestFleet::builder()
        .server("pg-a", "eu-west")
        .server("pg-b", "eu-west")
        .server("pg-c", "us-east")
        .build()
        .unwrap();
    let engine = engine_with_workers(&fleet).await;

    let requests = (0..10).map(|i| {
        let mut req = request(&format!("5{i:03}"), &format!("Spread {i}"));
        req.region = Some("eu-west".parse().unwrap());
        onboard(&engine, req)
    });
    let tenants = futures::future::join_all(requests).await;
    let mut per_server = BTreeMap::new();
    for t in &tenants {
        assert_eq!(t.status, TenantStatus::Active);
        *per_server
            .entry(t.server_id.clone().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_server,
        BTreeMap::from([("pg-a".to_owned(), 5), ("pg-b".to_owned(), 5)])
    );
    assert_eq!(fleet.tenant_databases("pg-a").len(), 5);
    assert!(
        fleet.tenant_databases("pg-c").is_empty(),
        "other region untouched"
    );

    engine
        .set_server_state(&"pg-b".parse().unwrap(), ServerState::Draining, &actor())
        .await
        .unwrap();
    for i in 10..16 {
        let mut req = request(&format!("5{i:03}"), &format!("Spread {i}"));
        req.region = Some("eu-west".parse().unwrap());
        let t = onboard(&engine, req).await;
        assert_eq!(t.server_id.unwrap().as_str(), "pg-a");
    }
    assert_eq!(
        fleet.tenant_databases("pg-b").len(),
        5,
        "draining server took nothing new"
    );

    let mut req = request("5999", "Nowhere");
    req.region = Some("ap-south".parse().unwrap());
    let err = engine.onboard(req, &actor()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownRegion, "{err}");
}

/// Onboardings and a move race for the last place on a server, each through an engine of its
/// own (as two registry replicas would): whoever wins, the server never holds more than its
/// capacity, counting the move heading there, and the loser is told so or waits for room.
#[tokio::test]
async fn onboardings_and_a_move_never_overfill_a_server_with_one_place_left() {
    let fleet = TestFleet::builder()
        .server("pg-1", "local")
        .server("pg-2", "local")
        .build()
        .unwrap();
    let mut first = config(&fleet);
    first.servers[1].capacity = 0;
    let setup = Engine::start(first).await.unwrap();
    let workers = setup.run_workers();
    let mover = onboard(&setup, request("6100", "Mover")).await;
    assert_eq!(mover.server_id.as_ref().unwrap().as_str(), "pg-1");
    workers.shutdown().await;
    // pg-1 is full with the mover; pg-2 has exactly one place (the configuration's capacity is
    // what every engine starting on it records).
    let mut full = config(&fleet);
    full.servers[0].capacity = 1;
    full.servers[1].capacity = 1;
    let mut registry = registry(&fleet).await;

    let actor = actor();
    // The move's request checks both servers before it records anything, so the onboardings
    // start later and later: in the first rounds they race its check, in the last they come
    // after its record.
    for (round, delay) in [0u64, 150, 400, 1500].into_iter().enumerate() {
        let a = Engine::start(full.clone()).await.unwrap();
        let b = Engine::start(full.clone()).await.unwrap();
        let target = MoveTenant {
            server_id: Some("pg-2".parse().unwrap()),
            mode: Some(MoveMode::Offline),
        };
        let moving = a.move_tenant(&mover.org_id, &target, &actor);
        let onboardings = futures::future::join_all((0..4).map(|i| {
            let (b, actor) = (&b, &actor);
            let mut req = request(&format!("62{round}{i}"), &format!("Racer {round} {i}"));
            req.region = Some("local".parse().unwrap());
            async move {
                tokio::time::sleep(Duration::from_millis(delay + 20 * i as u64)).await;
                b.onboard(req, actor).await
            }
        }));
        let (moved, onboarded) = tokio::join!(moving, onboardings);
        let placed_on_pg2: Vec<_> = onboarded
            .into_iter()
            .map(
                |o| match o.expect("an onboarding is recorded, placed or not") {
                    Onboarded::Created { tenant, .. } | Onboarded::Existing { tenant } => tenant,
                },
            )
            .filter(|t| t.server_id.as_ref().is_some_and(|s| s.as_str() == "pg-2"))
            .collect();
        match &moved {
            Ok(_) => assert!(placed_on_pg2.is_empty(), "round {round}: {placed_on_pg2:?}"),
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::InvalidTarget, "round {round}: {e}");
                assert_eq!(placed_on_pg2.len(), 1, "round {round}");
            }
        }
        let load: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM tenants WHERE server_id = 'pg-2')
                  + (SELECT count(*) FROM tenant_moves m JOIN operations o ON o.id = m.operation_id
                     WHERE m.target_server_id = 'pg-2' AND o.state IN ('queued', 'running'))",
        )
        .fetch_one(&mut registry)
        .await
        .unwrap();
        assert_eq!(load, 1, "round {round}: exactly the one place is taken");
        // Next round: the place is free again (the move or the tenant on pg-2 forgotten).
        sqlx::raw_sql(
            "DELETE FROM tenant_moves;
             UPDATE operations SET state = 'failed', finished_at = now()
               WHERE state IN ('queued', 'running');
             UPDATE tenants SET server_id = NULL, status = 'failed' WHERE server_id = 'pg-2';",
        )
        .execute(&mut registry)
        .await
        .unwrap();
    }
}

/// A process that has no password for a server (another replica registered it) never leaves a
/// tenant on it: the tenant placed there is placed again and provisioned elsewhere, later ones
/// are not placed there at all, and a move there is refused naming the missing password.
#[tokio::test]
async fn a_server_this_process_cannot_reach_is_skipped_and_its_tenant_placed_again() {
    let fleet = TestFleet::builder()
        .server("pg-1", "local")
        .server("pg-2", "local")
        .build()
        .unwrap();
    // One replica knows pg-1 only. Another, started later, records pg-2 too (with a password in
    // its own process only) and fills pg-1 a little, so placement prefers pg-2.
    let mut only_pg1 = config(&fleet);
    only_pg1.servers.retain(|s| s.id.as_str() == "pg-1");
    let replica = Engine::start(only_pg1).await.unwrap();
    let both = engine(&fleet).await;
    let both_workers = both.run_workers();
    let first = onboard(&both, request("6300", "First")).await;
    assert_eq!(first.server_id.as_ref().unwrap().as_str(), "pg-1");
    // From here on only the replica works: a worker that can reach pg-2 would rightly put the
    // tenant there.
    both_workers.shutdown().await;
    let workers = replica.run_workers();

    let tenant = onboard(&replica, request("6301", "Replaced")).await;
    assert_eq!(tenant.status, TenantStatus::Active);
    assert_eq!(tenant.server_id.as_ref().unwrap().as_str(), "pg-1");
    let op = replica
        .latest_operation(&tenant.org_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    assert!(op.attempts >= 2, "placed on pg-2 first, then again: {op:?}");
    assert!(
        fleet.tenant_databases("pg-2").is_empty(),
        "nothing left on pg-2"
    );

    let next = onboard(&replica, request("6302", "Straight")).await;
    assert_eq!(next.server_id.as_ref().unwrap().as_str(), "pg-1");
    let op = replica
        .latest_operation(&next.org_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.attempts, 1, "pg-2 is known to be out of reach: {op:?}");

    let to_pg2 = MoveTenant {
        server_id: Some("pg-2".parse().unwrap()),
        mode: Some(MoveMode::Offline),
    };
    let err = replica
        .move_tenant(&next.org_id, &to_pg2, &actor())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ServerUnavailable, "{err}");
    assert!(
        err.to_string()
            .contains("server pg-2 cannot be reached from this process"),
        "{err}"
    );
    workers.shutdown().await;
}
