//! One round of the usage sampler over many tenants beside one size query per tenant.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use sqlx::{Connection, PgConnection};
use tenancy_control::Engine;
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::measure::*;
use crate::{bench_config, onboard_all};

/// One usage sampler round over `n` tenants on one server (one query to the server, one batch
/// into the registry, enforcement), beside asking the server tenant by tenant.
pub(crate) async fn sampler(n: usize) -> Result<()> {
    let cluster = PgCluster::start_with(ClusterOptions {
        durable: true,
        ..ClusterOptions::default()
    })?;
    cluster.create_database("tenancy_registry")?;
    let mut config = bench_config(&cluster)?;
    config.engine.workers = 4;
    let engine = Engine::start(config).await?;
    let workers = engine.run_workers();
    onboard_all(
        &engine,
        300_000,
        n,
        "Sampled Org",
        Duration::from_secs(1200),
    )
    .await?;
    workers.shutdown().await;

    let mut rounds = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let round = engine.sample_usage().await?;
        rounds.push(started.elapsed());
        if round.tenants != n {
            bail!("the round sampled {} tenants of {n}", round.tenants);
        }
    }
    rounds.sort();
    let mut conn = PgConnection::connect(&cluster.url("postgres")).await?;
    let started = Instant::now();
    for i in 0..n {
        let _: (i64, i64) = sqlx::query_as(
            "SELECT pg_database_size($1), (SELECT count(*) FROM pg_stat_activity WHERE datname = $1)",
        )
        .bind(format!("tenant_sampled_org_{i}"))
        .fetch_one(&mut conn)
        .await?;
    }
    let per_tenant = started.elapsed();
    println!("usage sampler: one round over {n} tenants on one server, durable cluster");
    println!("  {:<38} {:>10}", "", "round");
    println!(
        "  {:<38} {:>10}",
        "one query per tenant, reads only (baseline)",
        fmt(per_tenant)
    );
    println!(
        "  {:<38} {:>10}",
        "sample_usage (median of 3)",
        fmt(rounds[1])
    );
    println!(
        "  ratio: {:.2}x the baseline's time",
        rounds[1].as_secs_f64() / per_tenant.as_secs_f64()
    );
    Ok(())
}
