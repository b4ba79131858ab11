use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tenancy_control::{ActivationError, AdminActivation, AdminActivator};
use tenancy_core::{OperationKind, OperationState, SuspendedBy};
use tenancy_testkit::{TestFleet, eventually};

use crate::helpers::*;

/// Counts activations and always succeeds.
#[derive(Default)]
struct CountingActivator(AtomicUsize);

impl AdminActivator for CountingActivator {
    fn activate_admin<'a>(
        &'a self,
        _: &'a AdminActivation,
    ) -> BoxFuture<'a, Result<String, ActivationError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok("263014839178700001".to_owned()) })
    }
}

/// A replica (or a tool) without an identity provider never takes an admin activation, so it
/// cannot fail it for good; a replica with one runs it.
#[tokio::test]
async fn admin_activation_is_left_to_a_process_that_can_run_it() {
    let fleet = TestFleet::single().unwrap();
    let with = engine(&fleet).await;
    let activator = Arc::new(CountingActivator::default());
    with.set_admin_activator(activator.clone());
    // The other process provisions; it has no activator.
    let without = engine_with_workers(&fleet).await;
    let mut req = request("1200", "Lane Corp");
    req.admin_email = Some("ann@lane.example".parse().unwrap());
    onboard(&with, req).await;

    let activation = eventually(Duration::from_secs(10), "activation queued", || async {
        without
            .tenant_operations(&org("1200"), 10)
            .await
            .unwrap()
            .into_iter()
            .find(|op| op.kind == OperationKind::ActivateAdmin)
    })
    .await;
    // Several poll intervals of the other process's workers.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let waited = without
        .drive_operation(activation.id, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(
        (waited.state, waited.attempts),
        (OperationState::Queued, 0),
        "never claimed by a process that cannot run it: {waited:?}"
    );

    let workers = with.run_workers();
    let done = with
        .wait_operation(activation.id, Duration::from_secs(30))
        .await
        .unwrap();
    workers.shutdown().await;
    assert_eq!(done.state, OperationState::Succeeded, "{done:?}");
    assert_eq!(activator.0.load(Ordering::SeqCst), 1);
}

/// A tool waiting for its own operation runs that one, and only that one.
#[tokio::test]
async fn driving_an_operation_never_claims_another() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine(&fleet).await;
    let mine = engine
        .onboard(request("1300", "Mine"), &actor())
        .await
        .unwrap();
    let theirs = engine
        .onboard(request("1301", "Theirs"), &actor())
        .await
        .unwrap();
    let (
        tenancy_control::Onboarded::Created {
            operation: mine, ..
        },
        tenancy_control::Onboarded::Created {
            operation: theirs, ..
        },
    ) = (mine, theirs)
    else {
        panic!("both are new");
    };
    let done = engine
        .drive_operation(mine.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(done.state, OperationState::Succeeded, "{done:?}");
    let other = engine.operation(theirs.id).await.unwrap();
    assert_eq!((other.state, other.attempts), (OperationState::Queued, 0));
    assert_eq!(fleet.tenant_databases("pg-1"), ["tenant_mine"]);
}

/// Server changes are fenced by the lease: a worker that lost its operation (its lease taken
/// over while it stalled) does not apply its step.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_worker_that_lost_its_lease_applies_no_stale_change() {
    let fleet = TestFleet::single().unwrap();
    let setup = engine(&fleet).await;
    let workers = setup.run_workers();
    let tenant = onboard(&setup, request("1400", "Fenced")).await;
    workers.shutdown().await;

    // The worker stalls right before blocking the tenant, until the test lets it go on.
    let (paused, on_pause) = std::sync::mpsc::channel::<()>();
    let (resume, on_resume) = std::sync::mpsc::channel::<()>();
    let on_resume = std::sync::Mutex::new(on_resume);
    let stall = move |kind, step, moment| {
        if kind == OperationKind::Suspend
            && step == tenancy_core::Step::Block
            && moment == tenancy_control::faults::Moment::Before
        {
            let _ = paused.send(());
            // Blocking a runtime thread: tell the runtime, so its other work moves elsewhere.
            tokio::task::block_in_place(|| {
                let _ = on_resume
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
            });
        }
        false
    };
    let mut stalled_config = config(&fleet);
    stalled_config.engine.workers = 1;
    let stalled = tenancy_control::Engine::start_with_faults(stalled_config, Arc::new(stall))
        .await
        .unwrap();
    let stalled_workers = stalled.run_workers();
    let op = stalled
        .suspend(&tenant.org_id, SuspendedBy::Platform, &actor())
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || on_pause.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the worker reached the block");
    // Meanwhile its lease expired and another worker took the operation over.
    sqlx::query(
        "UPDATE operations SET lease_owner = 'another-worker', lease_expires_at = now() + interval '1 hour'
         WHERE id = $1",
    )
    .bind(op.id)
    .execute(&mut registry(&fleet).await)
    .await
    .unwrap();
    resume.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stalled_workers.shutdown().await;

    assert_eq!(
        fleet
            .cluster("pg-1")
            .psql(
                "postgres",
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'tenant_fenced'"
            )
            .unwrap(),
        "t",
        "the stale worker did not block the role"
    );
    let op = stalled.operation(op.id).await.unwrap();
    assert_eq!(op.state, OperationState::Running, "left to its new owner");
}

/// Finishing an operation and queuing one for the same tenant both lock the tenant's row
/// first. A finish that changed its operation first and then waited for the row deadlocked with
/// a request queuing one (a tier change, found by an API fuzzer): one of the two failed.
#[tokio::test]
async fn finishing_an_operation_never_deadlocks_with_queuing_one() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine(&fleet).await;
    let workers = engine.run_workers();
    onboard(&engine, request("1300", "Lock Order")).await;
    workers.shutdown().await;
    let suspension = engine
        .suspend(&org("1300"), SuspendedBy::Platform, &actor())
        .await
        .unwrap();

    // A request queuing an operation, caught between its two statements: the tenant's row
    // locked, the insert to come.
    let mut queuing = registry(&fleet).await;
    sqlx::raw_sql("BEGIN").execute(&mut queuing).await.unwrap();
    sqlx::query("SELECT 1 FROM tenants WHERE org_id = $1 FOR UPDATE")
        .bind("1300")
        .execute(&mut queuing)
        .await
        .unwrap();
    let workers = engine.run_workers();
    let observer = sqlx::PgPool::connect(&fleet.registry_url()).await.unwrap();
    eventually(
        Duration::from_secs(30),
        "the suspension's finish waits for the row",
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT FROM pg_stat_activity
                                WHERE datname = current_database() AND wait_event_type = 'Lock')",
            )
            .fetch_one(&observer)
            .await
            .unwrap()
            .then_some(())
        },
    )
    .await;
    let queued = sqlx::query(
        "INSERT INTO operations (id, org_id, kind, state, step)
         VALUES (gen_random_uuid(), $1, 'retier', 'queued', 'apply_limits')",
    )
    .bind("1300")
    .execute(&mut queuing)
    .await;
    let refused = queued.expect_err("the suspension is still open");
    assert_eq!(
        refused
            .as_database_error()
            .and_then(|e| e.constraint())
            .map(str::to_owned),
        Some("operations_one_open_per_tenant".to_owned()),
        "{refused}"
    );
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut queuing)
        .await
        .unwrap();

    let finished = eventually(Duration::from_secs(60), "the suspension ends", || async {
        engine
            .latest_operation(&org("1300"))
            .await
            .unwrap()
            .filter(|op| op.finished_at.is_some())
    })
    .await;
    workers.shutdown().await;
    assert_eq!(finished.id, suspension.id);
    assert_eq!(
        (
            finished.state,
            finished.attempts,
            finished.last_error.as_deref()
        ),
        (OperationState::Succeeded, 1, None),
        "finished at its first attempt"
    );
}

/// A registry transaction ended for a conflict with another one succeeds when tried again: it is
/// answered 503 `unavailable` (with `Retry-After`), not 500 `internal`.
#[tokio::test]
async fn a_transaction_conflict_is_worth_trying_again() {
    let fleet = TestFleet::single().unwrap();
    let (mut first, mut second) = (registry(&fleet).await, registry(&fleet).await);
    sqlx::raw_sql(
        "CREATE TABLE conflict_probe (id int PRIMARY KEY, n int);
         INSERT INTO conflict_probe VALUES (1, 0);",
    )
    .execute(&mut first)
    .await
    .unwrap();
    sqlx::raw_sql(
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT n FROM conflict_probe WHERE id = 1;",
    )
    .execute(&mut first)
    .await
    .unwrap();
    sqlx::raw_sql("UPDATE conflict_probe SET n = 1 WHERE id = 1")
        .execute(&mut second)
        .await
        .unwrap();
    let conflict = sqlx::raw_sql("UPDATE conflict_probe SET n = 2 WHERE id = 1")
        .execute(&mut first)
        .await
        .expect_err("a serialization failure");
    let error = tenancy_control::ControlError::Registry(conflict);
    assert_eq!(
        error.code(),
        tenancy_core::ErrorCode::Unavailable,
        "{error}"
    );
    assert_eq!(error.code().status(), 503);
}
