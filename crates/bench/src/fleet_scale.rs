//! `make bench-scale`: the operator's view of thousands of real tenants on one server. A cold
//! onboarding of all of them (sign-ups per second), `tenantctl status` with drift, a no-op
//! `tenantctl migrate` and a real migration (template version 3 to the latest), each beside its
//! limit measured in the same run: one plain connection per tenant database, one at a time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tenancy_control::Engine;
use tenancy_control::fleet::{FleetEvent, MigrateOptions, SchemaDrift};
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::measure::*;
use crate::{bench_config, onboard_all};

const FIRST_ORG: usize = 600_000;

pub(crate) async fn fleet_scale(n: usize, concurrency: usize) -> Result<()> {
    let cluster = PgCluster::start_with(ClusterOptions {
        max_connections: 300,
        ..ClusterOptions::default()
    })?;
    cluster.create_database("tenancy_registry")?;
    let mut config = bench_config(&cluster)?;
    config.engine.template_version = Some(3);
    config.engine.workers = 8;
    config.engine.poll_interval = Duration::from_millis(50);
    let engine = Engine::start(config).await?;
    let workers = engine.run_workers();
    let disk_before = cluster_bytes(&cluster)?;

    let started = Instant::now();
    onboard_all(
        &engine,
        FIRST_ORG,
        n,
        "Scale Org",
        Duration::from_secs(1800),
    )
    .await?;
    let onboarding = started.elapsed();
    workers.shutdown().await;
    let disk = cluster_bytes(&cluster)? - disk_before;
    println!(
        "fleet at scale: {n} tenants on one server (template version 3), 2 cores, {} of disk ({} each)",
        mib(disk),
        mib(disk / n as i64)
    );
    println!(
        "  cold onboarding, 8 workers: {} in all, {:.1} sign-ups/s",
        fmt(onboarding),
        n as f64 / onboarding.as_secs_f64()
    );

    // The limit: one plain connection and one query per tenant database, one at a time.
    let admin = engine.server_admin(&"bench-1".parse()?).await?;
    let started = Instant::now();
    for i in 0..n {
        let db = format!("tenant_scale_org_{i}");
        let (client, connection) = admin
            .tokio_postgres_config(&db)
            .connect(tokio_postgres::NoTls)
            .await?;
        let driver = tokio::spawn(connection);
        client.simple_query("SELECT 1").await?;
        drop(client);
        driver.await??;
    }
    let plain = started.elapsed();

    let started = Instant::now();
    let status = engine.fleet_status().await?;
    let status_time = started.elapsed();
    if status.len() != n || status.iter().any(|s| s.drift != SchemaDrift::None) {
        bail!("status did not find {n} tenants without drift");
    }

    let at = |target| MigrateOptions {
        target: Some(target),
        concurrency,
        ..MigrateOptions::default()
    };
    let started = Instant::now();
    let report = engine.migrate_fleet(&at(3), Arc::new(|_| {})).await?;
    let noop = started.elapsed();
    if report.up_to_date != n {
        bail!("the no-op migration found work: {report:?}");
    }

    let latest = tenancy_control::migrate::latest_template_version();
    let ddl = Arc::new(Mutex::new(Vec::new()));
    let on_event = {
        let ddl = ddl.clone();
        Arc::new(move |event: FleetEvent| {
            if let FleetEvent::TenantMigrated { millis, .. } = event {
                ddl.lock()
                    .expect("ddl")
                    .push(Duration::from_millis(millis as u64));
            }
        })
    };
    let started = Instant::now();
    let report = engine.migrate_fleet(&at(latest), on_event).await?;
    let real = started.elapsed();
    if !report.success() || report.migrated != n {
        bail!("the migration did not migrate every tenant: {report:?}");
    }
    let mut ddl = std::mem::take(&mut *ddl.lock().expect("ddl"));
    let ddl_sum: Duration = ddl.iter().sum();
    let (ddl_p50, ddl_p99) = percentiles(&mut ddl);

    let per = |d: Duration| fmt(d / n as u32);
    println!("  {:<52} {:>10} {:>12}", "", "total", "per tenant");
    println!(
        "  {:<52} {:>10} {:>12}",
        "plain connect + SELECT 1, one at a time (baseline)",
        fmt(plain),
        per(plain)
    );
    println!(
        "  {:<52} {:>10} {:>12}",
        "tenantctl status (version and drift of each)",
        fmt(status_time),
        per(status_time)
    );
    println!(
        "  {:<52} {:>10} {:>12}",
        format!("tenantctl migrate, nothing to do, concurrency {concurrency}"),
        fmt(noop),
        per(noop)
    );
    println!(
        "  {:<52} {:>10} {:>12}",
        format!("tenantctl migrate 3 -> {latest}, concurrency {concurrency}"),
        fmt(real),
        per(real)
    );
    println!(
        "  status {:.2}x and no-op migrate {:.2}x the baseline; the real migration's DDL took p50 {} p99 {} a tenant, its limit (DDL time x tenants / concurrency) {} ({:.2}x)",
        status_time.as_secs_f64() / plain.as_secs_f64(),
        noop.as_secs_f64() / plain.as_secs_f64(),
        fmt(ddl_p50),
        fmt(ddl_p99),
        fmt(ddl_sum / concurrency as u32),
        real.as_secs_f64() / (ddl_sum / concurrency as u32).as_secs_f64()
    );
    // The cluster's directory, every tenant database with it, goes when it is dropped.
    Ok(())
}

fn cluster_bytes(cluster: &PgCluster) -> Result<i64> {
    Ok(cluster
        .psql(
            "postgres",
            "SELECT sum(pg_database_size(datname))::bigint FROM pg_database",
        )?
        .trim()
        .parse()?)
}

fn mib(n: i64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}
