//! Fault injection for crash and race tests: a hook the worker consults around every step, and
//! the reconciler between its reads. Production engines have none.

use tenancy_core::{OperationKind, ServerId, Step};

/// Where in a step the worker asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// Before the step's side effect.
    Before,
    /// After the side effect, before progress is recorded: the worst moment to die.
    After,
}

/// Decides whether the worker "dies" at a point. When it does, the worker abandons the operation
/// without releasing its lease and stops, as a killed process would; another worker takes the
/// operation over once the lease expires.
pub trait FaultInjector: Send + Sync + 'static {
    fn crash_at(&self, kind: OperationKind, step: Step, moment: Moment) -> bool;

    /// Called by the reconciler right after it read a server's inventory, before it reads the
    /// registry: a test pauses here to change the registry in between.
    fn after_inventory(&self, _server: &ServerId) {}
}

impl<F> FaultInjector for F
where
    F: Fn(OperationKind, Step, Moment) -> bool + Send + Sync + 'static,
{
    fn crash_at(&self, kind: OperationKind, step: Step, moment: Moment) -> bool {
        self(kind, step, moment)
    }
}
