//! What every handler may use: the engine and what the service was built with. Built once by
//! `startup`, the composition root; the handlers' modules read it, none of them builds it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use tenancy_control::Engine;
use tenancy_core::OrgId;

use crate::auth::Authenticators;
use crate::error::ApiError;
use crate::zitadel::Identity;

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub authenticators: Authenticators,
    pub metrics: PrometheusHandle,
    /// The OpenAPI document as served.
    pub openapi: Arc<serde_json::Value>,
    /// Signing keys that ZITADEL's organization events must be signed with.
    pub webhook_keys: Arc<Vec<SecretString>>,
    /// ZITADEL's management API, when a service account is configured.
    pub identity: Option<Arc<Identity>>,
    /// Organizations that are never tenants (the ignore list and the platform's own).
    pub ignored_orgs: Arc<BTreeSet<OrgId>>,
    /// The longest `wait` honoured.
    pub max_wait: Duration,
    /// Wakes the applier of recorded organization events.
    pub org_events: Arc<tokio::sync::Notify>,
    /// The admin console's sign-in and safety settings.
    pub console: Arc<crate::oidc::Console>,
}

impl AppState {
    /// The management API, or a clear refusal when no service account is configured.
    pub fn identity(&self) -> Result<&Identity, ApiError> {
        self.identity.as_deref().ok_or(ApiError::Refused {
            code: tenancy_core::ErrorCode::ZitadelNotConfigured,
            detail: "ZITADEL's management API is not configured: set TENANCY_ZITADEL_ISSUER and a \
                     service account (TENANCY_ZITADEL_SERVICE_ACCOUNT_PAT or _KEY_FILE)"
                .into(),
        })
    }
}

impl FromRef<AppState> for Authenticators {
    fn from_ref(state: &AppState) -> Self {
        state.authenticators.clone()
    }
}
