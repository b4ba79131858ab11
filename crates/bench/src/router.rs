//! The router: one tenant's borrow beside a plain pool, and many tenants over a connection
//! budget.

use std::time::{Duration, Instant};

use anyhow::Result;
use sqlx::{Connection, PgConnection};
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::measure::*;

/// Router overhead (borrow + `SELECT 1` through the router versus a plain deadpool pool on the
/// same database) and throughput over many tenants with a per-server budget of 40, beside one
/// plain pool of 40 connections.
pub(crate) async fn router(tenants: usize) -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tenancy_core::{ConnectionInfo, TenantStatus};
    use tenancy_router::{RouterConfig, StaticResolver, TenantRouter};

    let cluster = PgCluster::start_with(ClusterOptions {
        durable: true,
        max_connections: 200,
        ..ClusterOptions::default()
    })?;
    // The verifier a tenant role gets from the engine by default, so that opening a connection
    // costs what it costs a real router.
    let verifier = tenancy_control::secrets::scram_verifier(
        &"app-password".into(),
        tenancy_control::secrets::DEFAULT_SCRAM_ITERATIONS,
    );
    cluster.psql(
        "postgres",
        &format!("CREATE ROLE app_user LOGIN PASSWORD '{verifier}'"),
    )?;
    let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
    let resolver = Arc::new(StaticResolver::new());
    for i in 0..tenants {
        let db = format!("tenant_bench_{i}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut admin)
            .await?;
        resolver.set(ConnectionInfo {
            org_id: (300_000 + i).to_string().parse()?,
            host: cluster.host().into(),
            port: cluster.port(),
            dbname: db.parse()?,
            user: "app_user".parse()?,
            password: Some("app-password".into()),
            server_id: "bench-1".parse()?,
            status: TenantStatus::Active,
            tier: "free".parse().unwrap(),
            kind: tenancy_core::TenantKind::Standalone,
            parent_org_id: None,
            agency_status: None,
            pool_size: 2,
            sslmode: tenancy_core::SslMode::Disable,
            ca_pem: None,
        });
    }
    let plain_pool = |db: &str, size: usize| -> Result<deadpool_postgres::Pool> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(cluster.host())
            .port(cluster.port())
            .user("app_user")
            .password("app-password")
            .dbname(db);
        let manager = deadpool_postgres::Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        Ok(deadpool_postgres::Pool::builder(manager)
            .max_size(size)
            .build()?)
    };
    let config = RouterConfig {
        per_server_budget: 40,
        acquire_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let router = TenantRouter::new(resolver, config);

    // 1. Latency of one borrow + SELECT 1, alternating router and plain pool on the same database.
    let org: tenancy_core::OrgId = "300000".parse()?;
    let plain = plain_pool("tenant_bench_0", 2)?;
    let (mut via_router, mut via_plain) = (Vec::new(), Vec::new());
    for i in 0..5_000 {
        let started = Instant::now();
        let client = router.get(&org).await?;
        client.simple_query("SELECT 1").await?;
        drop(client);
        let r = started.elapsed();
        let started = Instant::now();
        let client = plain.get().await?;
        client.simple_query("SELECT 1").await?;
        drop(client);
        let p = started.elapsed();
        if i >= 200 {
            via_router.push(r);
            via_plain.push(p);
        }
    }
    let (r50, r99) = percentiles(&mut via_router);
    let (p50, p99) = percentiles(&mut via_plain);
    println!("router: borrow + SELECT 1, one tenant, 4800 samples");
    println!("  {:<38} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "  {:<38} {:>10} {:>10}",
        "plain deadpool pool (baseline)",
        fmt_us(p50),
        fmt_us(p99)
    );
    println!(
        "  {:<38} {:>10} {:>10}",
        "TenantRouter::get",
        fmt_us(r50),
        fmt_us(r99)
    );
    println!(
        "  ratio router/plain: p50 {:.2}x (target <= 1.10x), p99 {:.2}x",
        r50.as_secs_f64() / p50.as_secs_f64(),
        r99.as_secs_f64() / p99.as_secs_f64()
    );

    // 2. Throughput: 64 borrowers, random tenants, for a fixed time, beside one plain pool of 40.
    let window = Duration::from_secs(10);
    let run = |borrow: Arc<
        dyn Fn(usize) -> tenancy_router::BoxFuture<'static, Result<()>> + Send + Sync,
    >| async move {
        let count = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + window;
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (count, borrow) = (count.clone(), borrow.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let i = rand::random_range(0..tenants);
                        borrow(i).await?;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<_, anyhow::Error>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok::<_, anyhow::Error>(count.load(Ordering::Relaxed) as f64 / window.as_secs_f64())
    };
    let plain40 = plain_pool("tenant_bench_0", 40)?;
    let plain_rate = run(Arc::new(move |_| {
        let pool = plain40.clone();
        Box::pin(async move {
            let client = pool.get().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
    }))
    .await?;
    let routed = router.clone();
    let router_rate = run(Arc::new(move |i| {
        let router = routed.clone();
        Box::pin(async move {
            let org: tenancy_core::OrgId = (300_000 + i).to_string().parse()?;
            let client = router.get(&org).await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
    }))
    .await?;
    println!("router: throughput, 64 borrowers, {window:?}, budget 40 connections to the server");
    println!(
        "  {:<38} {:>12}",
        "plain pool of 40, one database",
        format!("{plain_rate:.0}/s")
    );
    println!(
        "  {:<38} {:>12}",
        format!("router over {tenants} tenants"),
        format!("{router_rate:.0}/s")
    );
    println!(
        "  ratio router/plain: {:.2}x; peak connections {:?}",
        router_rate / plain_rate,
        router.connections_per_server()
    );
    Ok(())
}
