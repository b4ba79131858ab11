//! Warm onboarding (a spare claimed) beside a raw clone, and a burst of sign-ups on a pool.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use sqlx::{Connection, PgConnection};
use tenancy_control::Engine;
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::bench_config;
use crate::breakdown::Breakdown;
use crate::measure::*;
use crate::onboarding::*;

/// Warm onboarding (a spare claimed) beside raw `CREATE DATABASE ... TEMPLATE` plus a
/// connection: the raw clones first, then the onboardings on a quiet server (a checkpoint
/// between), then onboardings each right after a raw clone (the clone's writes still landing);
/// then a burst of 100 concurrent sign-ups over a pool of 20.
pub(crate) async fn warm_pool(n: usize, breakdown: &Breakdown) -> Result<()> {
    let cluster = PgCluster::start_with(ClusterOptions {
        durable: true,
        ..Default::default()
    })?;
    cluster.create_database("tenancy_registry")?;
    let mut config = bench_config(&cluster)?;
    config.warm_pool.size = u32::try_from(2 * (n + 3))?;
    // Filled before each part; no refill competes with the measurements.
    config.warm_pool.refill_interval = Duration::from_secs(3600);
    let engine = Engine::start(config.clone()).await?;
    engine.refill_warm_pool().await?;
    let workers = engine.run_workers();

    let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
    let mut raw = Vec::with_capacity(n);
    for i in 0..n + 3 {
        let (took, _) = raw_clone(&mut admin, &cluster, &format!("raw_warm_{i}")).await?;
        if i >= 3 {
            raw.push(took);
        }
    }
    sqlx::raw_sql("CHECKPOINT").execute(&mut admin).await?;

    let mut warm = Vec::with_capacity(n);
    let mut phases = [(); 2].map(|()| Vec::with_capacity(n));
    for i in 0..n + 3 {
        if i == 3 {
            breakdown.reset();
        }
        let signup = warm_signup(&engine, &cluster, 400_000 + i).await?;
        if i >= 3 {
            warm.push(signup.total);
            for (phase, took) in phases.iter_mut().zip([signup.answered, signup.connected]) {
                phase.push(took);
            }
        }
    }
    let report = breakdown.take("provision", n);
    let mut after_clone = Vec::with_capacity(n);
    for i in 0..n + 3 {
        raw_clone(&mut admin, &cluster, &format!("raw_before_{i}")).await?;
        let signup = warm_signup(&engine, &cluster, 450_000 + i).await?;
        if i >= 3 {
            after_clone.push(signup.total);
        }
    }

    let (raw50, raw99) = percentiles(&mut raw);
    let (warm50, warm99) = percentiles(&mut warm);
    let (after50, after99) = percentiles(&mut after_clone);
    println!("warm pool: request to connectable database, {n} tenants, durable cluster");
    println!("  {:<38} {:>10} {:>10}", "", "p50", "p99");
    for (what, p50, p99) in [
        ("raw CREATE DATABASE ... TEMPLATE", raw50, raw99),
        ("engine onboard, spare claimed", warm50, warm99),
        ("  the same, right after a raw clone", after50, after99),
    ] {
        println!("  {what:<38} {:>10} {:>10}", fmt(p50), fmt(p99));
    }
    println!(
        "  ratio warm/raw: p50 {:.2}x, p99 {:.2}x (target p50 <= 10 ms)",
        warm50.as_secs_f64() / raw50.as_secs_f64(),
        warm99.as_secs_f64() / raw99.as_secs_f64()
    );
    println!("  the request's phases (p50, quiet server):");
    for (phase, mut took) in [
        "request answered (tenant active)",
        "client: password, connect, SELECT 1",
    ]
    .into_iter()
    .zip(phases)
    {
        println!(
            "    {phase:<38} {:>8.2} ms",
            percentiles(&mut took).0.as_secs_f64() * 1000.0
        );
    }
    report.print();
    workers.shutdown().await;

    // The burst: 100 sign-ups at once, 20 spares.
    let mut config = config;
    config.warm_pool.size = 20;
    let engine = Engine::start(config).await?;
    engine.refill_warm_pool().await?;
    let workers = engine.run_workers();
    let cluster = std::sync::Arc::new(cluster);
    let started = Instant::now();
    let mut signups = Vec::new();
    for i in 0..100 {
        let (engine, cluster) = (engine.clone(), cluster.clone());
        signups.push(tokio::spawn(async move {
            onboard_and_connect(&engine, &cluster, 500_000 + i).await
        }));
    }
    let mut warm = 0;
    for signup in signups {
        if signup.await??.path == Some(tenancy_core::ProvisionPath::Warm) {
            warm += 1;
        }
    }
    let burst = started.elapsed();
    workers.shutdown().await;
    println!(
        "  burst: 100 concurrent sign-ups, pool of 20: all connectable in {} ({warm} warm, {} cold)",
        fmt(burst),
        100 - warm
    );
    Ok(())
}

/// An onboarding that must claim a spare.
pub(crate) async fn warm_signup(
    engine: &Engine,
    cluster: &PgCluster,
    org: usize,
) -> Result<Signup> {
    let signup = onboard_and_connect(engine, cluster, org).await?;
    if signup.path != Some(tenancy_core::ProvisionPath::Warm) {
        bail!(
            "onboarding {org} took the {:?} path, not a spare",
            signup.path
        );
    }
    Ok(signup)
}
