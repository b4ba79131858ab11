//! `make bench`: every benchmark runs its plain baseline in the same run, on the same cluster,
//! and prints the ratio.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};
use tenancy_control::{Actor, Config, Engine, Onboarded, ServerConfig};
use tenancy_core::{CreateTenant, OperationState, ServerState};
use tenancy_testkit::{ClusterOptions, PgCluster};

#[derive(Parser)]
#[command(about = "Benchmarks of the control plane against their plain baselines")]
struct Args {
    /// Which benchmarks to run.
    #[arg(long, value_enum, default_value = "all")]
    only: Which,
    /// Tenants onboarded (and raw clones made) in the onboarding benchmark.
    #[arg(long, default_value_t = 60)]
    tenants: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Onboarding,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if matches!(args.only, Which::All | Which::Onboarding) {
        onboarding(args.tenants).await?;
    }
    Ok(())
}

/// Onboarding latency, request to connectable database, beside raw `CREATE DATABASE ... TEMPLATE`
/// plus a connection, alternating one of each so both see the same cluster state.
async fn onboarding(n: usize) -> Result<()> {
    let cluster = PgCluster::start_with(ClusterOptions {
        durable: true,
        ..Default::default()
    })?;
    cluster.create_database("tenancy_registry")?;
    let mut config = Config::new(cluster.url("tenancy_registry"));
    config.engine.master_key = Some(SecretString::from("bench-master-key"));
    config.engine.poll_interval = Duration::from_millis(500);
    config.servers = vec![ServerConfig {
        id: "bench-1".parse()?,
        region: "local".parse()?,
        host: cluster.host().into(),
        port: cluster.port(),
        admin_user: cluster.admin_user().into(),
        password_env: None,
        password: Some(SecretString::from(cluster.admin_password())),
        admin_database: "postgres".into(),
        capacity: 100_000,
        state: ServerState::Active,
    }];
    let engine = Engine::start(config).await?;
    let workers = engine.run_workers();
    let actor = Actor::named("bench");

    let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
    let mut raw = Vec::with_capacity(n);
    let mut engine_times = Vec::with_capacity(n);
    for i in 0..n + 3 {
        let warmup = i < 3;
        let started = Instant::now();
        let name = format!("raw_clone_{i}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE tenant_template"
        )))
        .execute(&mut admin)
        .await?;
        let mut conn = PgConnection::connect(&cluster.url(&name)).await?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        let raw_time = started.elapsed();
        conn.close().await?;

        let request = CreateTenant {
            org_id: format!("{}", 100_000 + i).parse()?,
            name: format!("Bench Org {i}").parse()?,
            slug: None,
            region: None,
            tier: None,
            parent_org_id: None,
            admin_email: None,
        };
        let started = Instant::now();
        let Onboarded::Created { tenant, operation } = engine.onboard(request, &actor).await?
        else {
            bail!("tenant {i} already existed");
        };
        let op = engine
            .wait_operation(operation.id, Duration::from_secs(60))
            .await?;
        if op.state != OperationState::Succeeded {
            bail!("onboarding {i} did not succeed: {op:?}");
        }
        let role = tenant.slug.role_name();
        let password = engine.tenant_password(&role)?;
        let mut conn = PgConnection::connect(&cluster.url_as(
            role.as_str(),
            password.expose_secret(),
            tenant.db_name.as_str(),
        ))
        .await
        .context("connecting as the tenant")?;
        sqlx::query("SELECT 1").execute(&mut conn).await?;
        let engine_time = started.elapsed();
        conn.close().await?;
        if !warmup {
            raw.push(raw_time);
            engine_times.push(engine_time);
        }
    }
    workers.shutdown().await;

    let (raw50, raw99) = percentiles(&mut raw);
    let (eng50, eng99) = percentiles(&mut engine_times);
    println!("onboarding: request to connectable database, {n} tenants, durable cluster");
    println!("  {:<38} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "  {:<38} {:>10} {:>10}",
        "raw CREATE DATABASE ... TEMPLATE",
        fmt(raw50),
        fmt(raw99)
    );
    println!(
        "  {:<38} {:>10} {:>10}",
        "engine onboard (all steps)",
        fmt(eng50),
        fmt(eng99)
    );
    println!(
        "  ratio engine/raw: p50 {:.2}x, p99 {:.2}x (target p50 <= 1.25x)",
        eng50.as_secs_f64() / raw50.as_secs_f64(),
        eng99.as_secs_f64() / raw99.as_secs_f64()
    );
    Ok(())
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

fn fmt(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
