//! The registry in-process (see `tenancy_registry::testing`), and a client for it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenancy_control::Config;
use tenancy_registry::Settings;
use tenancy_registry::auth::Authenticator;
use tenancy_registry::testing::InProcessRegistry;
pub use tenancy_registry::testing::{DEV_TOKEN, dev_settings};
use tenancy_testkit::eventually;

pub struct TestApp {
    pub http: reqwest::Client,
    /// A token with every role: the development token, or a ZITADEL platform admin's.
    pub admin: String,
    registry: InProcessRegistry,
}

impl TestApp {
    /// The registry with these settings and extra authenticators; `tune` adjusts the engine.
    pub async fn start_with(
        settings: Settings,
        authenticators: Vec<Arc<dyn Authenticator>>,
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        Self {
            http: reqwest::Client::new(),
            admin: DEV_TOKEN.to_owned(),
            registry: InProcessRegistry::start_with(settings, authenticators, tune)
                .await
                .unwrap(),
        }
    }

    /// As [`TestApp::start_with`], on `fleet`.
    pub async fn start_on(
        fleet: tenancy_testkit::TestFleet,
        settings: Settings,
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        Self {
            http: reqwest::Client::new(),
            admin: DEV_TOKEN.to_owned(),
            registry: InProcessRegistry::start_on(fleet, settings, Vec::new(), tune)
                .await
                .unwrap(),
        }
    }

    pub fn fleet(&self) -> &tenancy_testkit::TestFleet {
        &self.registry.fleet
    }

    pub fn base(&self) -> &str {
        &self.registry.base
    }

    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base()))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Calls with the admin token.
    pub async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(&self.admin, method, path, body).await
    }

    /// GET `path` as the admin until `check` accepts the body; panics after 30 s.
    pub async fn wait_until(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(
            Duration::from_secs(30),
            format!("{path} as expected"),
            || async {
                let (_, body) = self.admin_call(Method::GET, path, None).await;
                check(&body).then_some(body)
            },
        )
        .await
    }

    /// Waits until the tenant has `status`.
    pub async fn wait_status(&self, org_id: &str, status: &str) -> Value {
        self.wait_until(&format!("/v1/tenants/{org_id}"), |t| t["status"] == status)
            .await
    }
}

/// Signs and delivers ZITADEL organization events to a registry.
pub struct Webhook<'a> {
    pub app: &'a TestApp,
    pub key: &'static str,
}

impl Webhook<'_> {
    pub fn body(org: &str, kind: &str, seq: i64, name: &str) -> String {
        json!({"aggregateID": org, "aggregateType": "org", "resourceOwner": org,
               "instanceID": "1", "version": "v1", "sequence": seq, "event_type": kind,
               "created_at": "2026-11-22T14:00:00.123Z", "userID": "9",
               "event_payload": {"name": name}})
        .to_string()
    }

    pub async fn post(&self, body: String, signature: String) -> StatusCode {
        self.app
            .http
            .post(format!("{}/v1/zitadel/events", self.app.base()))
            .header("zitadel-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
    }

    pub async fn deliver(&self, org: &str, kind: &str, seq: i64, name: &str) -> StatusCode {
        let body = Self::body(org, kind, seq, name);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signature = tenancy_zitadel::webhook::sign(body.as_bytes(), self.key, now);
        self.post(body, signature).await
    }
}
