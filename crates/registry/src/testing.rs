//! The registry in-process (real HTTP, real engine, workers) on a test fleet: for tests and
//! benchmarks that need a registry but not its binary, such as the registry's own API tests, the
//! router's, the example service's and `make bench`'s. Behind the `testing` feature, so that
//! nothing in production links the test kit.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::{Application, Settings};
use anyhow::{Context, Result, ensure};
use secrecy::SecretString;
use serde_json::json;
use tenancy_client::{Onboarding, RegistryClient};
use tenancy_control::Config;
use tenancy_core::CreateTenant;
use tenancy_testkit::TestFleet;

/// The development token of [`dev_settings`]: every role.
pub const DEV_TOKEN: &str = "dev-token-for-tests-0123456789abcdef";

/// The fleet as the registry's configuration.
pub fn fleet_config(fleet: &TestFleet) -> Result<Config> {
    Ok(Config::from_toml(&fleet.toml(), |var| fleet.secret(var))?)
}

/// Settings with [`DEV_TOKEN`] on a free loopback port.
pub fn dev_settings() -> Settings {
    let mut settings = Settings::new("127.0.0.1:0".parse().expect("address"));
    settings.dev_token = Some(SecretString::from(DEV_TOKEN));
    settings
}

/// A running registry; it stops with the test's runtime, its fleet when this is dropped.
pub struct InProcessRegistry {
    pub base: String,
    pub fleet: TestFleet,
}

impl InProcessRegistry {
    /// With [`dev_settings`] on a one-server fleet.
    pub async fn start() -> Result<Self> {
        Self::start_with(dev_settings(), Vec::new(), |_| {}).await
    }

    /// With these settings and extra authenticators; `tune` adjusts the configuration.
    pub async fn start_with(
        settings: Settings,
        authenticators: Vec<Arc<dyn Authenticator>>,
        tune: impl FnOnce(&mut Config),
    ) -> Result<Self> {
        Self::start_on(TestFleet::single()?, settings, authenticators, tune).await
    }

    /// As [`InProcessRegistry::start_with`], on `fleet`.
    pub async fn start_on(
        fleet: TestFleet,
        settings: Settings,
        authenticators: Vec<Arc<dyn Authenticator>>,
        tune: impl FnOnce(&mut Config),
    ) -> Result<Self> {
        let mut config = fleet_config(&fleet)?;
        tune(&mut config);
        let base = Application::spawn(settings, config, authenticators).await?;
        Ok(Self { base, fleet })
    }

    /// Onboards `org_id` as `name` with [`DEV_TOKEN`] and waits until it is active.
    pub async fn onboard(&self, org_id: &str, name: &str) -> Result<()> {
        self.onboard_with(&reqwest::Client::new(), org_id, name)
            .await
    }

    /// As [`InProcessRegistry::onboard`], with this HTTP client (one that trusts a test CA).
    pub async fn onboard_with(
        &self,
        http: &reqwest::Client,
        org_id: &str,
        name: &str,
    ) -> Result<()> {
        self.create(http, json!({"org_id": org_id, "name": name}))
            .await
    }

    /// Onboards the tenant `request` describes (`kind`, `parent_org_id`, `tier`, ...) with
    /// [`DEV_TOKEN`] and waits until it is active.
    pub async fn create(&self, http: &reqwest::Client, request: serde_json::Value) -> Result<()> {
        let request: CreateTenant = serde_json::from_value(request).context("the request")?;
        let client = RegistryClient::with_http(http.clone(), self.base.as_str(), DEV_TOKEN);
        let onboarded = client
            .onboard(&request, Some(std::time::Duration::from_secs(30)))
            .await
            .context("onboarding")?;
        ensure!(
            matches!(onboarded, Onboarding::Active(_)),
            "onboarding {:?} answered {onboarded:?}",
            request.org_id
        );
        Ok(())
    }
}
