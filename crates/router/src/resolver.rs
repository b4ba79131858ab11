//! Where a tenant lives: behind a trait, so tests (and unusual deployments) can resolve without
//! the registry.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use tenancy_core::{
    ChangeFeed, ConnectionInfo, EffectiveFeatures, OrgId, Problem, QuotaName, QuotaStatus, Setting,
    Tenant, TenantChange, UsageCounted, UsageIncrement,
};
use tokio::sync::Notify;

use crate::error::RouterError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Resolves a tenant to its connection settings, and reports changes.
pub trait Resolver: Send + Sync + 'static {
    fn resolve<'a>(
        &'a self,
        org_id: &'a OrgId,
    ) -> BoxFuture<'a, Result<ConnectionInfo, RouterError>>;

    /// Changes after `after`, waiting up to `wait` for one. Routers invalidate what changed.
    fn changes(&self, after: i64, wait: Duration)
    -> BoxFuture<'_, Result<ChangeFeed, RouterError>>;

    /// The tenant's settings (secrets in plain text) and effective features.
    fn settings<'a>(
        &'a self,
        org_id: &'a OrgId,
    ) -> BoxFuture<'a, Result<(Vec<Setting>, EffectiveFeatures), RouterError>> {
        Box::pin(async move {
            Err(RouterError::Registry(format!(
                "this resolver has no settings (tenant {org_id})"
            )))
        })
    }

    /// An agency's clients, every status.
    fn clients<'a>(&'a self, agency: &'a OrgId) -> BoxFuture<'a, Result<Vec<Tenant>, RouterError>> {
        Box::pin(async move {
            Err(RouterError::Registry(format!(
                "this resolver lists no clients (agency {agency})"
            )))
        })
    }

    /// Counts usage of a product quota, all or nothing.
    fn count_usage<'a>(
        &'a self,
        org_id: &'a OrgId,
        resource: &'a QuotaName,
        increment: &'a UsageIncrement,
    ) -> BoxFuture<'a, Result<UsageCounted, RouterError>> {
        let _ = (resource, increment);
        Box::pin(async move {
            Err(RouterError::Registry(format!(
                "this resolver counts no usage (tenant {org_id})"
            )))
        })
    }
}

/// The registry's connection-info endpoint and change feed, with a token holding `tenant_router`.
pub struct RegistryResolver {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl RegistryResolver {
    /// A resolver for the registry at `base_url` (`https://` is verified against the public web
    /// roots; see [`RegistryResolver::with_root_ca`] for a private CA).
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self::build(base_url, token, None).expect("an HTTP client without extra roots")
    }

    /// A resolver that also trusts `ca_pem` (PEM, one or more certificates) for the registry's
    /// certificate.
    pub fn with_root_ca(
        base_url: impl Into<String>,
        token: impl Into<String>,
        ca_pem: &str,
    ) -> Result<Self, RouterError> {
        Self::build(base_url, token, Some(ca_pem))
    }

    fn build(
        base_url: impl Into<String>,
        token: impl Into<String>,
        ca_pem: Option<&str>,
    ) -> Result<Self, RouterError> {
        let mut http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| RouterError::Registry(format!("registry CA: {e}")))?;
            if certs.is_empty() {
                return Err(RouterError::Registry(
                    "registry CA holds no certificate".into(),
                ));
            }
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| RouterError::Registry(format!("HTTP client: {e}")))?;
        Ok(Self {
            base: base_url.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            http,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Option<T>), RouterError> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| RouterError::Registry(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Ok((status, None));
        }
        let body = response
            .json()
            .await
            .map_err(|e| RouterError::Registry(e.to_string()))?;
        Ok((status, Some(body)))
    }
}

impl RegistryResolver {
    async fn fetch<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, RouterError> {
        match self.get(path, Duration::from_secs(10)).await? {
            (_, Some(body)) => Ok(body),
            (status, None) => Err(RouterError::Registry(format!("{path} answered {status}"))),
        }
    }
}

/// A page of `GET /v1/tenants/{org_id}/clients`.
#[derive(serde::Deserialize)]
struct ClientPage {
    items: Vec<Tenant>,
    next_cursor: Option<OrgId>,
}

impl Resolver for RegistryResolver {
    fn clients<'a>(&'a self, agency: &'a OrgId) -> BoxFuture<'a, Result<Vec<Tenant>, RouterError>> {
        Box::pin(async move {
            let mut clients = Vec::new();
            let mut cursor: Option<OrgId> = None;
            loop {
                let mut path = format!("/v1/tenants/{agency}/clients?limit=500");
                if let Some(after) = &cursor {
                    path.push_str(&format!("&cursor={after}"));
                }
                let page: ClientPage = match self.get(&path, Duration::from_secs(10)).await? {
                    (_, Some(page)) => page,
                    (StatusCode::NOT_FOUND, None) => {
                        return Err(RouterError::UnknownTenant(agency.clone()));
                    }
                    (status, None) => {
                        return Err(RouterError::Registry(format!(
                            "listing clients answered {status}"
                        )));
                    }
                };
                clients.extend(page.items);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => return Ok(clients),
                }
            }
        })
    }

    fn settings<'a>(
        &'a self,
        org_id: &'a OrgId,
    ) -> BoxFuture<'a, Result<(Vec<Setting>, EffectiveFeatures), RouterError>> {
        Box::pin(async move {
            let settings = self
                .fetch(&format!("/v1/tenants/{org_id}/settings"))
                .await?;
            let features = self
                .fetch(&format!("/v1/tenants/{org_id}/features"))
                .await?;
            Ok((settings, features))
        })
    }

    fn count_usage<'a>(
        &'a self,
        org_id: &'a OrgId,
        resource: &'a QuotaName,
        increment: &'a UsageIncrement,
    ) -> BoxFuture<'a, Result<UsageCounted, RouterError>> {
        Box::pin(async move {
            let response = self
                .http
                .post(format!(
                    "{}/v1/tenants/{org_id}/usage/{resource}",
                    self.base
                ))
                .bearer_auth(&self.token)
                .timeout(Duration::from_secs(10))
                .json(increment)
                .send()
                .await
                .map_err(|e| RouterError::Registry(e.to_string()))?;
            let status = response.status();
            if status.is_success() {
                return response
                    .json()
                    .await
                    .map_err(|e| RouterError::Registry(e.to_string()));
            }
            let problem: Option<Problem> = response.json().await.ok();
            match (status, problem) {
                (StatusCode::TOO_MANY_REQUESTS, Some(p)) => Err(RouterError::QuotaExceeded {
                    org_id: org_id.clone(),
                    quota: Box::new(QuotaStatus {
                        resource: resource.clone(),
                        limit: p.limit.unwrap_or_default(),
                        used: p.used.unwrap_or_default(),
                        remaining: (p.limit.unwrap_or_default() - p.used.unwrap_or_default())
                            .max(0),
                        period: if p.resets_at.is_some() {
                            tenancy_core::QuotaPeriod::Month
                        } else {
                            tenancy_core::QuotaPeriod::None
                        },
                        period_start: None,
                        resets_at: p.resets_at,
                        agency_org_id: p.agency_org_id,
                    }),
                }),
                (StatusCode::NOT_FOUND, _) => Err(RouterError::InvalidQuota(format!(
                    "tenant {org_id} or its quota {resource} does not exist"
                ))),
                (status, problem) => Err(RouterError::Registry(format!(
                    "counting usage answered {status}: {}",
                    problem.map(|p| p.detail).unwrap_or_default()
                ))),
            }
        })
    }

    fn resolve<'a>(
        &'a self,
        org_id: &'a OrgId,
    ) -> BoxFuture<'a, Result<ConnectionInfo, RouterError>> {
        Box::pin(async move {
            match self
                .get(
                    &format!("/v1/tenants/{org_id}/connection"),
                    Duration::from_secs(10),
                )
                .await?
            {
                (_, Some(info)) => Ok(info),
                (StatusCode::NOT_FOUND, None) => Err(RouterError::UnknownTenant(org_id.clone())),
                // Recorded but not placed yet: still provisioning.
                (StatusCode::CONFLICT, None) => Err(RouterError::NotActive {
                    org_id: org_id.clone(),
                    status: tenancy_core::TenantStatus::Provisioning,
                }),
                (status, None) => Err(RouterError::Registry(format!(
                    "connection info answered {status}"
                ))),
            }
        })
    }

    fn changes(
        &self,
        after: i64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ChangeFeed, RouterError>> {
        Box::pin(async move {
            let path = format!("/v1/changes?after={after}&wait={}s", wait.as_secs());
            match self.get(&path, wait + Duration::from_secs(10)).await? {
                (_, Some(feed)) => Ok(feed),
                (status, None) => Err(RouterError::Registry(format!(
                    "change feed answered {status}"
                ))),
            }
        })
    }
}

/// A fixed table of tenants, for tests and static deployments; `set` records a change.
#[derive(Default)]
pub struct StaticResolver {
    state: Mutex<StaticState>,
    changed: Notify,
}

#[derive(Default)]
struct StaticState {
    tenants: HashMap<OrgId, ConnectionInfo>,
    changes: Vec<TenantChange>,
    resolutions: usize,
}

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the change sequence over, as a registry restored from a backup does: routers
    /// asking after a number it no longer has are told to reset.
    pub fn restart_feed(&self) {
        self.state.lock().expect("resolver lock").changes.clear();
    }

    /// How many times a tenant was resolved (what a router asked its registry).
    pub fn resolutions(&self) -> usize {
        self.state.lock().expect("resolver lock").resolutions
    }

    /// Adds or replaces a tenant, and tells watching routers.
    pub fn set(&self, info: ConnectionInfo) {
        let mut state = self.state.lock().expect("resolver lock");
        let seq = state.changes.len() as i64 + 1;
        state.changes.push(TenantChange {
            seq,
            org_id: info.org_id.clone(),
            status: info.status,
            tier: info.tier.clone(),
            read_only: false,
        });
        state.tenants.insert(info.org_id.clone(), info);
        drop(state);
        self.changed.notify_waiters();
    }
}

impl Resolver for StaticResolver {
    fn resolve<'a>(
        &'a self,
        org_id: &'a OrgId,
    ) -> BoxFuture<'a, Result<ConnectionInfo, RouterError>> {
        let mut state = self.state.lock().expect("resolver lock");
        state.resolutions += 1;
        let found = state.tenants.get(org_id).cloned();
        drop(state);
        Box::pin(async move { found.ok_or_else(|| RouterError::UnknownTenant(org_id.clone())) })
    }

    fn changes(
        &self,
        after: i64,
        wait: Duration,
    ) -> BoxFuture<'_, Result<ChangeFeed, RouterError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let (changes, last): (Vec<TenantChange>, i64) = {
                    let state = self.state.lock().expect("resolver lock");
                    let changes = state
                        .changes
                        .iter()
                        .filter(|c| c.seq > after)
                        .cloned()
                        .collect();
                    (changes, state.changes.len() as i64)
                };
                if after > last {
                    return Ok(ChangeFeed {
                        changes: Vec::new(),
                        last_seq: last,
                        reset: true,
                    });
                }
                if !changes.is_empty() || tokio::time::Instant::now() >= deadline {
                    let last_seq = changes.last().map_or(after, |c| c.seq);
                    return Ok(ChangeFeed {
                        changes,
                        last_seq,
                        reset: false,
                    });
                }
                let _ = tokio::time::timeout_at(deadline, notified).await;
            }
        })
    }
}
