//! ZITADEL integration, following ZITADEL's documented HTTP contract:
//!
//! - [`Caller`]: who called, from which organization, with which project roles where;
//! - [`Verifier`]: access tokens to callers. A token with two dots is a JWT, checked against the
//!   issuer's JWKS (from OIDC discovery; keys cached, refreshed on an unknown `kid` at most once per
//!   `jwks_min_refresh`); anything else is an opaque token checked by the introspection endpoint
//!   (client secret basic or private-key JWT), cached briefly;
//! - [`TenantContext`]: the tenant a request acts in (an agency's caller may name one of its
//!   clients in [`TENANT_HEADER`]), decided from the caller and the registry's answer;
//! - [`CallerLayer`]: a tower layer that verifies `Authorization: Bearer` and puts the [`Caller`]
//!   in the request extensions;
//! - [`Management`]: the management API as a service account (personal access token or JWT
//!   profile key file): organizations, the first admin of an organization (user, invitation,
//!   project role grant), every create safe to repeat;
//! - provisioning ([`Project`], [`Application`], machine users and keys): what
//!   `tenantctl zitadel bootstrap` sets up as an instance owner;
//! - [`webhook`]: Actions v2 signature checks and organization events.

mod caller;
mod context;
mod discovery;
mod keyfile;
mod layer;
mod management;
mod provision;
mod verify;
pub mod webhook;

pub use caller::{Caller, roles};
pub use context::{ContextError, TENANT_HEADER, TenantContext};
pub use keyfile::{KeyFile, KeyFileError};
pub use layer::{CallerLayer, CallerService};
pub use management::{
    ActivatedAdmin, HumanUser, Management, ManagementConfig, ManagementError, Organization, Paging,
    ServiceAccount,
};
pub use provision::{Application, Ensured, NewKey, Project};
pub use verify::{IntrospectionClient, Verifier, VerifierConfig, VerifyError};
