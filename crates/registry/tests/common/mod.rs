//! The registry in-process, on a throw-away cluster, and a client for it.

#![allow(dead_code)] // each test binary uses its own part

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::Value;
use tenancy_control::{Config, ServerConfig};
use tenancy_registry::auth::Authenticator;
use tenancy_registry::{Application, Settings};
use tenancy_testkit::PgCluster;

pub fn single_server(cluster: &PgCluster) -> Config {
    let server = ServerConfig::new(
        "pg-1".parse().unwrap(),
        "local".parse().unwrap(),
        cluster.host(),
        cluster.port(),
        cluster.admin_user(),
        SecretString::from(cluster.admin_password()),
    );
    let mut config = Config::single_server(
        cluster.url("tenancy_registry"),
        server,
        SecretString::from("k"),
    );
    config.engine.poll_interval = Duration::from_millis(100);
    config
}

/// Settings with the development token `dev` (every role) on a free loopback port.
pub fn dev_settings() -> Settings {
    let mut settings = Settings::new("127.0.0.1:0".parse().unwrap());
    settings.dev_token = Some(SecretString::from("dev"));
    settings
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    _cluster: PgCluster,
}

impl TestApp {
    /// The registry with these settings and extra authenticators; `tune` adjusts the engine.
    pub async fn start_with(
        settings: Settings,
        authenticators: Vec<Arc<dyn Authenticator>>,
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        tenancy_testkit::init_test_logging();
        let cluster = PgCluster::start().unwrap();
        cluster.create_database("tenancy_registry").unwrap();
        let mut config = single_server(&cluster);
        tune(&mut config);
        let base = Application::spawn(settings, config, authenticators)
            .await
            .unwrap();
        Self {
            base,
            http: reqwest::Client::new(),
            _cluster: cluster,
        }
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
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GET `path` as `dev` until `check` accepts the body; panics after 30 s.
    pub async fn wait_until(&self, path: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = self.call("dev", Method::GET, path, None).await;
            if check(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} never as expected: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the tenant has `status`.
    pub async fn wait_status(&self, org_id: &str, status: &str) -> Value {
        self.wait_until(&format!("/v1/tenants/{org_id}"), |t| t["status"] == status)
            .await
    }
}
