//! A fleet migration of many tenants beside a sequential loop of migrations.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tenancy_control::Engine;
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::measure::*;
use crate::{bench_config, onboard_all};

/// Fleet migration of `n` tenants with the engine (concurrency per server) beside a sequential
/// loop over another `n` tenants, both applying the same migration (template version 3 to 4).
pub(crate) async fn fleet(n: usize, concurrency: usize) -> Result<()> {
    let cluster = PgCluster::start_with(ClusterOptions {
        durable: true,
        max_connections: 300,
        ..ClusterOptions::default()
    })?;
    cluster.create_database("tenancy_registry")?;
    let mut config = bench_config(&cluster)?;
    config.engine.template_version = Some(3);
    let engine = Engine::start(config).await?;
    let workers = engine.run_workers();
    onboard_all(
        &engine,
        200_000,
        2 * n,
        "Fleet Org",
        Duration::from_secs(600),
    )
    .await?;
    workers.shutdown().await;
    let admin = engine.server_admin(&"bench-1".parse()?).await?;
    let latest = tenancy_control::migrate::latest_template_version();

    let started = Instant::now();
    for i in 0..n {
        let db = format!("tenant_fleet_org_{i}");
        tenancy_control::migrate::migrate_schema(
            &admin.tokio_postgres_config(&db),
            admin.tls()?,
            Some(latest),
        )
        .await?;
    }
    let sequential = started.elapsed();

    let options = tenancy_control::fleet::MigrateOptions {
        selector: tenancy_core::TenantSelector {
            org_ids: (n..2 * n)
                .map(|i| (200_000 + i).to_string().parse())
                .collect::<Result<_, _>>()?,
            ..Default::default()
        },
        concurrency,
        ..Default::default()
    };
    let started = Instant::now();
    let report = engine
        .migrate_fleet(&options, std::sync::Arc::new(|_| {}))
        .await?;
    let parallel = started.elapsed();
    if !report.success() || report.migrated != n {
        bail!("fleet migration did not migrate every tenant: {report:?}");
    }
    println!(
        "fleet migration: {n} tenants per side, version 3 -> {latest}, durable cluster, 2 cores"
    );
    println!("  {:<38} {:>10} {:>14}", "", "total", "per tenant");
    println!(
        "  {:<38} {:>10} {:>14}",
        "sequential loop (baseline)",
        fmt(sequential),
        fmt(sequential / n as u32)
    );
    println!(
        "  {:<38} {:>10} {:>14}",
        format!("tenantctl migrate, concurrency {concurrency}"),
        fmt(parallel),
        fmt(parallel / n as u32)
    );
    println!(
        "  speed-up: {:.2}x",
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
    Ok(())
}
