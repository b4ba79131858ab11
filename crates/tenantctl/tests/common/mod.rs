//! Set-up shared by the tenantctl tests: tenants onboarded through the engine, before the real
//! binary is driven.

use std::time::Duration;

use tenancy_control::{Actor, Engine, Onboarded};
use tenancy_core::{CreateTenant, Operation, OperationState};

/// The organization `org` named `name`, as an onboarding request.
pub fn request(org: usize, name: &str) -> CreateTenant {
    CreateTenant::new(org.to_string().parse().unwrap(), name.parse().unwrap())
}

/// Queues a new tenant's onboarding; returns its operation.
pub async fn queue(engine: &Engine, request: CreateTenant) -> Operation {
    match engine
        .onboard(request, &Actor::named("test"))
        .await
        .unwrap()
    {
        Onboarded::Created { operation, .. } => operation,
        other => panic!("not a new tenant: {other:?}"),
    }
}

/// Waits until each of the operations succeeded.
pub async fn all_succeed(engine: &Engine, operations: Vec<Operation>) {
    for operation in operations {
        let op = engine
            .wait_operation(operation.id, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    }
}

/// Onboards the tenants and waits until every one of them is.
pub async fn onboard_all(engine: &Engine, requests: impl IntoIterator<Item = CreateTenant>) {
    let mut operations = Vec::new();
    for request in requests {
        operations.push(queue(engine, request).await);
    }
    all_succeed(engine, operations).await;
}
