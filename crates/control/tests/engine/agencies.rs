//! Agencies and their clients: platform -> agency -> client, exactly; a client's agency must
//! be an active (or provisioning) agency; an agency goes after its clients.

use tenancy_control::ControlError;
use tenancy_core::{CreateTenant, ErrorCode, SuspendedBy, TenantKind};
use tenancy_testkit::TestFleet;

use crate::helpers::*;

fn create(org: &str, name: &str, kind: Option<TenantKind>, parent: Option<&str>) -> CreateTenant {
    let mut request = request(org, name);
    request.kind = kind;
    request.parent_org_id = parent.map(|p| p.parse().unwrap());
    request
}

fn code(error: &ControlError) -> ErrorCode {
    error.code()
}

#[tokio::test]
async fn clients_go_under_live_agencies_only_and_the_hierarchy_is_two_deep() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let agency = onboard(
        &engine,
        create("8101", "Agency One", Some(TenantKind::Agency), None),
    )
    .await;
    assert_eq!(agency.kind, TenantKind::Agency);
    let other = onboard(
        &engine,
        create("8102", "Agency Two", Some(TenantKind::Agency), None),
    )
    .await;
    let standalone = onboard(&engine, request("8103", "Standalone")).await;
    assert_eq!(standalone.kind, TenantKind::Standalone);
    // A parent makes a client, with or without saying so.
    let client = onboard(&engine, create("8104", "Client One", None, Some("8101"))).await;
    assert_eq!(
        (client.kind, client.parent_org_id.clone()),
        (TenantKind::Client, Some(agency.org_id.clone()))
    );

    for (request, expected) in [
        (
            create("8110", "Orphan", None, Some("9999")),
            ErrorCode::UnknownParent,
        ),
        (
            create("8111", "Under Standalone", None, Some("8103")),
            ErrorCode::InvalidParent,
        ),
        (
            create("8112", "Under Client", None, Some("8104")),
            ErrorCode::InvalidParent,
        ),
        (
            create(
                "8113",
                "Agency Under",
                Some(TenantKind::Agency),
                Some("8101"),
            ),
            ErrorCode::ValidationFailed,
        ),
        (
            create("8114", "Parentless Client", Some(TenantKind::Client), None),
            ErrorCode::ValidationFailed,
        ),
        (
            create("8115", "Own Agency", None, Some("8115")),
            ErrorCode::InvalidParent,
        ),
    ] {
        let refused = engine.onboard(request, &actor()).await.unwrap_err();
        assert_eq!(code(&refused), expected, "{refused}");
    }
    for org_id in ["8110", "8111", "8112", "8113", "8114", "8115"] {
        assert!(
            engine.tenant(&org(org_id)).await.is_err(),
            "{org_id} was made"
        );
    }

    // An agency with a live client cannot be deleted; a deleted agency takes no clients.
    let refused = engine
        .delete(&agency.org_id, tenancy_control::Cascade::Refuse, &actor())
        .await
        .unwrap_err();
    assert_eq!(code(&refused), ErrorCode::HasClients, "{refused}");
    let doomed = onboard(
        &engine,
        create("8105", "Agency Doomed", Some(TenantKind::Agency), None),
    )
    .await;
    engine
        .delete(&doomed.org_id, tenancy_control::Cascade::Refuse, &actor())
        .await
        .unwrap();
    let refused = engine
        .onboard(create("8116", "Late Client", None, Some("8105")), &actor())
        .await
        .unwrap_err();
    assert_eq!(code(&refused), ErrorCode::InvalidParent, "{refused}");

    // Listing by agency and kind.
    let filter = tenancy_control::TenantFilter {
        selector: tenancy_core::TenantSelector::clients_of(&agency.org_id),
        limit: 100,
        ..Default::default()
    };
    let clients = engine.list_tenants(&filter).await.unwrap();
    assert_eq!(
        clients
            .iter()
            .map(|t| t.org_id.as_str())
            .collect::<Vec<_>>(),
        ["8104"]
    );
    let agencies = engine
        .list_tenants(&tenancy_control::TenantFilter {
            selector: tenancy_core::TenantSelector {
                kind: Some(TenantKind::Agency),
                ..Default::default()
            },
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(agencies.len(), 3);

    // Moving a client: to another live agency only; a standalone tenant does not move.
    let moved = engine
        .move_to_agency(&client.org_id, &other.org_id, &actor())
        .await
        .unwrap();
    assert_eq!(moved.parent_org_id, Some(other.org_id.clone()));
    for (tenant, to, expected) in [
        ("8104", "8103", ErrorCode::InvalidParent),
        ("8104", "8105", ErrorCode::InvalidParent),
        ("8103", "8101", ErrorCode::InvalidState),
        ("8104", "8104", ErrorCode::InvalidParent),
    ] {
        let refused = engine
            .move_to_agency(&org(tenant), &org(to), &actor())
            .await
            .unwrap_err();
        assert_eq!(code(&refused), expected, "{tenant} -> {to}: {refused}");
    }
    // Now the first agency has no live client and can go.
    engine
        .delete(&agency.org_id, tenancy_control::Cascade::Refuse, &actor())
        .await
        .unwrap();
}

async fn settled(engine: &tenancy_control::Engine, op: tenancy_core::Operation) {
    let op = engine
        .wait_operation(op.id, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op.state, tenancy_core::OperationState::Succeeded, "{op:?}");
}

/// Waits for the tenant's latest operation (one a cascade queued, say) to succeed.
async fn settle_latest(engine: &tenancy_control::Engine, org_id: &tenancy_core::OrgId) {
    let latest = engine.tenant_operations(org_id, 1).await.unwrap();
    settled(engine, latest.into_iter().next().expect("an operation")).await;
}

/// Suspending an agency suspends its active clients (reason `agency suspended`), each by an
/// operation of its own; resuming it resumes only those: a client an operator suspended before
/// stays suspended.
#[tokio::test]
async fn an_agency_suspension_carries_to_its_clients_and_its_resumption_only_undoes_its_own() {
    use std::time::Duration;
    use tenancy_core::TenantStatus;

    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let agency = onboard(
        &engine,
        create("8201", "Cascading Agency", Some(TenantKind::Agency), None),
    )
    .await;
    let carried = onboard(
        &engine,
        create("8202", "Carried Client", None, Some("8201")),
    )
    .await;
    let held = onboard(&engine, create("8203", "Held Client", None, Some("8201"))).await;
    settled(
        &engine,
        engine
            .suspend(&held.org_id, SuspendedBy::Platform, &actor())
            .await
            .unwrap(),
    )
    .await;

    settled(
        &engine,
        engine
            .suspend(&agency.org_id, SuspendedBy::Platform, &actor())
            .await
            .unwrap(),
    )
    .await;
    let client = wait_status(
        &engine,
        &carried.org_id,
        TenantStatus::Suspended,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(client.status_reason.as_deref(), Some("agency suspended"));
    assert_eq!(client.suspended_by, Some(SuspendedBy::AgencyCascade));
    // The status changes when the client's suspension is asked for (so routers refuse it at
    // once); its role is blocked when that operation has run.
    let client_suspension = engine
        .tenant_operations(&carried.org_id, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|op| op.kind == tenancy_core::OperationKind::Suspend)
        .expect("the client's own suspension");
    settled(&engine, client_suspension).await;
    assert!(
        connect_own(&engine, fleet.cluster("pg-1"), &carried)
            .await
            .is_err()
    );
    let suspends = operations_of_kind(
        &engine,
        &carried.org_id,
        tenancy_core::OperationKind::Suspend,
    )
    .await;
    assert_eq!(suspends, 1);
    assert_eq!(
        engine.tenant(&held.org_id).await.unwrap().suspended_by,
        Some(SuspendedBy::Platform)
    );

    settled(
        &engine,
        engine
            .resume(&agency.org_id, SuspendedBy::Platform, &actor())
            .await
            .unwrap(),
    )
    .await;
    wait_status(
        &engine,
        &carried.org_id,
        TenantStatus::Active,
        Duration::from_secs(30),
    )
    .await;
    connect_own(&engine, fleet.cluster("pg-1"), &carried)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        engine.tenant(&held.org_id).await.unwrap().status,
        TenantStatus::Suspended,
        "an operator's suspension stays"
    );
}

/// Who suspended decides who resumes (security review 2, N1): an agency's admins lift only the
/// agency's own suspensions, and none while the agency itself is not active; ZITADEL lifts only
/// its deactivation's; a platform admin lifts any. Every change is checked in the same
/// transaction that queues the resumption.
#[tokio::test]
async fn an_agency_lifts_only_its_own_suspensions_and_none_while_it_is_suspended() {
    use std::time::Duration;
    use tenancy_core::TenantStatus;

    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let agency = onboard(
        &engine,
        create("8401", "Strict Agency", Some(TenantKind::Agency), None),
    )
    .await;
    let by_platform = onboard(&engine, create("8402", "Abuser", None, Some("8401"))).await;
    let by_agency = onboard(&engine, create("8403", "Late Payer", None, Some("8401"))).await;
    let by_cascade = onboard(&engine, create("8404", "Bystander", None, Some("8401"))).await;
    for (client, by) in [
        (&by_platform, SuspendedBy::Platform),
        (&by_agency, SuspendedBy::Agency),
    ] {
        settled(
            &engine,
            engine.suspend(&client.org_id, by, &actor()).await.unwrap(),
        )
        .await;
    }

    for lifter in [
        SuspendedBy::Agency,
        SuspendedBy::Zitadel,
        SuspendedBy::AgencyCascade,
    ] {
        let refused = engine
            .resume(&by_platform.org_id, lifter, &actor())
            .await
            .unwrap_err();
        assert_eq!(code(&refused), ErrorCode::Forbidden, "{lifter}: {refused}");
    }
    let refused = engine
        .resume(&by_agency.org_id, SuspendedBy::Zitadel, &actor())
        .await
        .unwrap_err();
    assert_eq!(code(&refused), ErrorCode::Forbidden, "{refused}");

    // The agency suspended: its admins resume nothing, not even their own suspension.
    settled(
        &engine,
        engine
            .suspend(&agency.org_id, SuspendedBy::Platform, &actor())
            .await
            .unwrap(),
    )
    .await;
    wait_status(
        &engine,
        &by_cascade.org_id,
        TenantStatus::Suspended,
        Duration::from_secs(30),
    )
    .await;
    for client in [&by_agency, &by_cascade] {
        let refused = engine
            .resume(&client.org_id, SuspendedBy::Agency, &actor())
            .await
            .unwrap_err();
        assert!(
            matches!(
                code(&refused),
                ErrorCode::InvalidState | ErrorCode::Forbidden
            ),
            "{refused}"
        );
    }
    let refused = engine
        .resume(&by_agency.org_id, SuspendedBy::Agency, &actor())
        .await
        .unwrap_err();
    assert_eq!(code(&refused), ErrorCode::InvalidState, "{refused}");
    // A platform admin may lift the cascade's suspension meanwhile: the reconciler reports an
    // active client under a suspended agency.
    settle_latest(&engine, &by_cascade.org_id).await;
    settled(
        &engine,
        engine
            .resume(&by_cascade.org_id, SuspendedBy::Platform, &actor())
            .await
            .unwrap(),
    )
    .await;
    let report = engine
        .reconcile(tenancy_control::Repair::Nothing)
        .await
        .unwrap();
    let reported: Vec<_> = report
        .iter()
        .filter(|f| f.kind == tenancy_control::FindingKind::ClientOfInactiveAgency)
        .map(|f| f.org_id.clone().unwrap())
        .collect();
    assert_eq!(reported, vec![by_cascade.org_id.clone()], "{report:?}");
    settled(
        &engine,
        engine
            .suspend(&by_cascade.org_id, SuspendedBy::AgencyCascade, &actor())
            .await
            .unwrap(),
    )
    .await;

    // The agency resumed: its cascade lifts only what it suspended.
    settled(
        &engine,
        engine
            .resume(&agency.org_id, SuspendedBy::Platform, &actor())
            .await
            .unwrap(),
    )
    .await;
    wait_status(
        &engine,
        &by_cascade.org_id,
        TenantStatus::Active,
        Duration::from_secs(30),
    )
    .await;
    for (client, by) in [
        (&by_platform, SuspendedBy::Platform),
        (&by_agency, SuspendedBy::Agency),
    ] {
        let tenant = engine.tenant(&client.org_id).await.unwrap();
        assert_eq!(
            (tenant.status, tenant.suspended_by),
            (TenantStatus::Suspended, Some(by))
        );
    }
    // Now the agency's admins lift their own, and a platform admin lifts the platform's.
    settled(
        &engine,
        engine
            .resume(&by_agency.org_id, SuspendedBy::Agency, &actor())
            .await
            .unwrap(),
    )
    .await;
    settled(
        &engine,
        engine
            .resume(&by_platform.org_id, SuspendedBy::Platform, &actor())
            .await
            .unwrap(),
    )
    .await;
    for client in [&by_platform, &by_agency] {
        let tenant = engine.tenant(&client.org_id).await.unwrap();
        assert_eq!(
            (tenant.status, tenant.suspended_by),
            (TenantStatus::Active, None)
        );
    }
}

/// A client busy with another operation when its agency is suspended is suspended once that
/// operation ends, however long it takes (security review 2, N1): the cascade waits without
/// spending its attempts. Before, it gave up after `max_attempts` and left the client active.
#[tokio::test]
async fn a_busy_client_is_suspended_with_its_agency_once_it_is_free() {
    use std::time::Duration;
    use tenancy_core::{OperationState, TenantStatus};

    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    config.engine.max_attempts = 1;
    config.engine.backoff_base = Duration::from_millis(20);
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    let workers = engine.run_workers();
    let agency = onboard(
        &engine,
        create("8501", "Busy Agency", Some(TenantKind::Agency), None),
    )
    .await;
    let client = onboard(&engine, create("8502", "Busy Client", None, Some("8501"))).await;
    workers.shutdown().await;
    // The client busy: an operation another worker holds for the next hour.
    let busy = engine
        .rotate_credentials(&client.org_id, &actor())
        .await
        .unwrap();
    let mut registry = registry(&fleet).await;
    sqlx::query(
        "UPDATE operations SET state = 'running', lease_owner = 'another-worker',
                lease_expires_at = now() + interval '1 hour'
         WHERE id = $1",
    )
    .bind(busy.id)
    .execute(&mut registry)
    .await
    .unwrap();
    std::mem::forget(engine.run_workers());

    let suspension = engine
        .suspend(&agency.org_id, SuspendedBy::Platform, &actor())
        .await
        .unwrap();
    // Many times the backoff a failing step would be given.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = engine.operation(suspension.id).await.unwrap();
    assert!(
        matches!(
            waiting.state,
            OperationState::Queued | OperationState::Running
        ),
        "the cascade waits: {waiting:?}"
    );
    assert_eq!(
        engine.tenant(&client.org_id).await.unwrap().status,
        TenantStatus::Active
    );

    // The other operation ends: the client is suspended with its agency.
    sqlx::query(
        "UPDATE operations SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1",
    )
    .bind(busy.id)
    .execute(&mut registry)
    .await
    .unwrap();
    settled(&engine, suspension).await;
    let client = wait_status(
        &engine,
        &client.org_id,
        TenantStatus::Suspended,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(client.suspended_by, Some(SuspendedBy::AgencyCascade));
}

/// Deleting an agency with live clients is refused unless it takes them along: then each client
/// (an operator's suspended one too) is deleted by an operation of its own, which names the
/// agency's and shows among its operations, with the same retention.
#[tokio::test]
async fn deleting_an_agency_with_cascade_deletes_each_client_by_an_operation_of_its_own() {
    use std::time::Duration;
    use tenancy_control::Cascade;
    use tenancy_core::{OperationKind, TenantStatus};

    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let agency = onboard(
        &engine,
        create("8301", "Deleted Agency", Some(TenantKind::Agency), None),
    )
    .await;
    let active = onboard(&engine, create("8302", "Active Client", None, Some("8301"))).await;
    let held = onboard(&engine, create("8303", "Held Client", None, Some("8301"))).await;
    settled(
        &engine,
        engine
            .suspend(&held.org_id, SuspendedBy::Platform, &actor())
            .await
            .unwrap(),
    )
    .await;
    let bystander = onboard(&engine, request("8304", "Bystander")).await;

    let refused = engine
        .delete(&agency.org_id, Cascade::Refuse, &actor())
        .await
        .unwrap_err();
    assert_eq!(code(&refused), ErrorCode::HasClients, "{refused}");
    assert_eq!(
        engine.tenant(&agency.org_id).await.unwrap().status,
        TenantStatus::Active,
        "a refused delete changes nothing"
    );

    let op = engine
        .delete(&agency.org_id, Cascade::WithClients, &actor())
        .await
        .unwrap();
    settled(&engine, op.clone()).await;
    for client in [&active, &held] {
        wait_status(
            &engine,
            &client.org_id,
            TenantStatus::Deleted,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            operations_of_kind(&engine, &client.org_id, OperationKind::Deprovision).await,
            1
        );
        assert!(
            connect_own(&engine, fleet.cluster("pg-1"), client)
                .await
                .is_err(),
            "{} can still connect",
            client.org_id
        );
    }
    let listed = engine
        .operations_with_cascades(&agency.org_id, 100)
        .await
        .unwrap();
    let cascaded: Vec<&str> = listed
        .iter()
        .filter(|o| o.parent_operation_id == Some(op.id))
        .map(|o| o.org_id.as_str())
        .collect();
    assert_eq!(cascaded.len(), 2, "{listed:?}");
    assert!(cascaded.contains(&"8302") && cascaded.contains(&"8303"));

    // The same retention: each database is kept until the same moment, give or take the time
    // the cascade took.
    let mut registry = registry(&fleet).await;
    let kept: Vec<(
        String,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )> = sqlx::query_as(
        "SELECT org_id, deleted_at, purge_after FROM tenants
             WHERE org_id IN ('8301', '8302', '8303') ORDER BY org_id",
    )
    .fetch_all(&mut registry)
    .await
    .unwrap();
    let retention = engine.config().engine.retention;
    for (org_id, deleted_at, purge_after) in &kept {
        assert_eq!(
            (*purge_after - *deleted_at).to_std().unwrap().as_secs(),
            retention.as_secs(),
            "{org_id}"
        );
    }
    assert_eq!(kept.len(), 3);
    assert_eq!(
        engine.tenant(&bystander.org_id).await.unwrap().status,
        TenantStatus::Active
    );
}

/// An agency's cap on its clients' sum: clients racing on two engines (their own registry
/// connections) count exactly up to the cap, each increment all or nothing, and the refusal
/// names the agency. Each client's own quota still applies, and the agency's own usage is not
/// capped by it.
#[tokio::test]
async fn an_agency_cap_bounds_the_sum_over_its_clients_under_racing_increments() {
    use std::num::NonZeroU32;
    use tenancy_control::QuotaLimit;
    use tenancy_core::{QuotaCheckRequest, QuotaName, QuotaPeriod, UsageIncrement};

    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    let devices: QuotaName = "devices".parse().unwrap();
    let msp = config
        .tiers
        .get_mut(&"msp".parse::<tenancy_core::Tier>().unwrap())
        .unwrap();
    msp.client_quotas.insert(
        devices.clone(),
        QuotaLimit {
            limit: 30,
            period: QuotaPeriod::None,
        },
    );
    let first = tenancy_control::Engine::start(config.clone())
        .await
        .unwrap();
    std::mem::forget(first.run_workers());
    let second = tenancy_control::Engine::start(config).await.unwrap();
    let mut agency = create("8401", "Capped Agency", Some(TenantKind::Agency), None);
    agency.tier = Some("msp".parse().unwrap());
    let agency = onboard(&first, agency).await;
    let mut clients = Vec::new();
    for org_id in ["8402", "8403", "8404"] {
        // professional: 100 devices each, far above the cap.
        let mut client = create(org_id, &format!("Client {org_id}"), None, Some("8401"));
        client.tier = Some("professional".parse().unwrap());
        clients.push(onboard(&first, client).await.org_id);
    }

    let increment = |amount| UsageIncrement {
        amount: NonZeroU32::new(amount).unwrap(),
        idempotency_key: None,
    };
    let mut racers = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        for engine in [&first, &second] {
            for _ in 0..8 {
                let (engine, client, devices) = (engine.clone(), client.clone(), devices.clone());
                let amount = 1 + (i as u32 % 2);
                racers.push(tokio::spawn(async move {
                    let counted = engine
                        .count_usage(&client, &devices, &increment(amount), &actor())
                        .await;
                    (amount, counted)
                }));
            }
        }
    }
    let mut counted = 0;
    for racer in racers {
        match racer.await.unwrap() {
            (amount, Ok(_)) => counted += i64::from(amount),
            (_, Err(tenancy_control::ControlError::QuotaExceeded { quota, .. })) => {
                assert_eq!(quota.agency_org_id.as_ref(), Some(&agency.org_id));
                assert_eq!(quota.limit, 30);
            }
            (_, Err(other)) => panic!("{other}"),
        }
    }
    // 48 increments of 1 or 2 (64 devices asked): the cap is filled to within one device.
    assert!((29..=30).contains(&counted), "{counted} counted");
    let sum: i64 = {
        let mut sum = 0;
        for client in &clients {
            let quotas = first.quotas(client).await.unwrap();
            let own = quotas
                .iter()
                .find(|q| q.resource == devices && q.agency_org_id.is_none())
                .unwrap();
            let cap = quotas
                .iter()
                .find(|q| q.resource == devices && q.agency_org_id.is_some())
                .unwrap();
            assert_eq!((own.limit, cap.limit, cap.used), (100, 30, counted));
            sum += own.used;
        }
        sum
    };
    assert_eq!(sum, counted, "each client counted what the agency counted");

    // A check sees the cap as the binding quota; the agency's own devices are its own.
    let check = first
        .check_quota(
            &clients[0],
            &QuotaCheckRequest {
                resource: devices.clone(),
                amount: NonZeroU32::new(2).unwrap(),
            },
        )
        .await
        .unwrap();
    assert!(!check.allowed);
    assert_eq!(check.quota.agency_org_id, Some(agency.org_id.clone()));
    first
        .count_usage(&agency.org_id, &devices, &increment(50), &actor())
        .await
        .unwrap();
}
