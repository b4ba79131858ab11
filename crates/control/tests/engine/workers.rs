use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use tenancy_control::{ActivationError, AdminActivation, AdminActivator};
use tenancy_core::{OperationKind, OperationState};
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
    let op = stalled.suspend(&tenant.org_id, &actor()).await.unwrap();
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
