//! Usage increments through the API beside the same conditional `UPDATE` sent straight to the
//! registry database.

use std::time::Instant;

use anyhow::{Result, bail};
use tenancy_control::QuotaLimit;
use tenancy_core::QuotaPeriod;
use tenancy_registry::testing::{DEV_TOKEN, InProcessRegistry, dev_settings};

/// Usage increments per second through the API (16 clients, each increment with its own
/// idempotency key), beside the same conditional `UPDATE` sent straight to the registry
/// database by 16 connections.
pub(crate) async fn quotas(n: usize) -> Result<()> {
    const CLIENTS: usize = 16;
    let registry = InProcessRegistry::start_with(dev_settings(), Vec::new(), |config| {
        for tier in config.tiers.values_mut() {
            tier.quotas.insert(
                "api_calls".parse().expect("a quota name"),
                QuotaLimit {
                    limit: i64::MAX / 2,
                    period: QuotaPeriod::Month,
                },
            );
        }
    })
    .await?;
    registry.onboard("1", "Counted").await?;
    let per_client = n / CLIENTS;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (http, base) = (http.clone(), registry.base.clone());
        clients.spawn(async move {
            for i in 0..per_client {
                let response = http
                    .post(format!("{base}/v1/tenants/1/usage/api_calls"))
                    .bearer_auth(DEV_TOKEN)
                    .json(&serde_json::json!({"amount": 1, "idempotency_key": format!("b-{client}-{i}")}))
                    .send()
                    .await?;
                if !response.status().is_success() {
                    bail!("increment answered {}", response.status());
                }
            }
            Ok(())
        });
    }
    while let Some(result) = clients.join_next().await {
        result??;
    }
    let api = started.elapsed();

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect(&registry.fleet.registry_url())
        .await?;
    let period: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT period_start FROM quota_usage WHERE org_id = '1'")
            .fetch_one(&pool)
            .await?;
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let pool = pool.clone();
        clients.spawn(async move {
            for _ in 0..per_client {
                sqlx::query(
                    "UPDATE quota_usage SET used = used + 1 WHERE org_id = '1'
                     AND resource = 'api_calls' AND period_start = $1 AND used + 1 <= $2
                     RETURNING used",
                )
                .bind(period)
                .bind(i64::MAX / 2)
                .fetch_one(&pool)
                .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = clients.join_next().await {
        result??;
    }
    let plain = started.elapsed();
    let total = (per_client * CLIENTS) as f64;
    println!(
        "quotas: {} increments of one quota, {CLIENTS} concurrent clients",
        per_client * CLIENTS
    );
    println!(
        "  {:<38} {:>10.0}/s",
        "plain conditional UPDATE (baseline)",
        total / plain.as_secs_f64()
    );
    println!(
        "  {:<38} {:>10.0}/s",
        "POST /v1/tenants/{id}/usage/{resource}",
        total / api.as_secs_f64()
    );
    println!(
        "  ratio: {:.2}x the baseline's rate",
        plain.as_secs_f64() / api.as_secs_f64()
    );
    Ok(())
}
