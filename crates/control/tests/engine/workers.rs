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
    req.admin_email = Some("ann@lane.example".into());
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
