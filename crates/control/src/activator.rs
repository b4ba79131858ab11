//! Admin activation behind a trait: the engine knows that an organization's first admin must be
//! invited once its database is ready, not how. The registry implements it over ZITADEL's
//! management API; `control` stays free of any identity provider.

use futures::future::BoxFuture;
use tenancy_core::OrgId;

/// Who to invite, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminActivation {
    pub org_id: OrgId,
    pub email: String,
}

/// Why an activation did not go through. A retryable one is tried again with backoff.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ActivationError {
    pub message: String,
    pub retryable: bool,
}

/// Invites an organization's first admin and grants them `tenant_admin`. Must be idempotent:
/// the engine repeats it after a crash or a failed attempt, and "already there" counts as done.
pub trait AdminActivator: Send + Sync + 'static {
    /// Returns the admin's user id.
    fn activate_admin<'a>(
        &'a self,
        activation: &'a AdminActivation,
    ) -> BoxFuture<'a, Result<String, ActivationError>>;
}
