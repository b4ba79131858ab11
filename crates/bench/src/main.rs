//! `make bench`: every benchmark runs its plain baseline in the same run, on the same cluster,
//! and prints the ratio.

mod backups;
mod breakdown;
mod console;
mod fleet;
mod fleet_scale;
mod measure;
mod moves;
mod onboarding;
mod point_in_time;
mod quotas;
mod router;
mod router_skew;
mod sampler;
mod warm_pool;

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, ValueEnum};
use secrecy::SecretString;
use tenancy_control::{Actor, Config, Engine, Onboarded, ServerConfig};
use tenancy_core::{CreateTenant, OperationState};
use tenancy_testkit::PgCluster;

use crate::backups::backups;
use crate::breakdown::Breakdown;
use crate::console::console;
use crate::fleet::fleet;
use crate::fleet_scale::fleet_scale;
use crate::moves::move_tenant;
use crate::onboarding::onboarding;
use crate::point_in_time::point_in_time;
use crate::quotas::quotas;
use crate::router::router;
use crate::router_skew::router_skew;
use crate::sampler::sampler;
use crate::warm_pool::warm_pool;

#[derive(Parser)]
#[command(about = "Benchmarks of the control plane against their plain baselines")]
struct Args {
    /// Which benchmarks to run.
    #[arg(long, value_enum, default_value = "all")]
    only: Which,
    /// Tenants onboarded (and raw clones made) in the onboarding benchmark.
    #[arg(long, default_value_t = 60)]
    tenants: usize,
    /// Tenants migrated by each side of the fleet migration benchmark.
    #[arg(long, default_value_t = 200)]
    fleet_tenants: usize,
    /// Tenants behind the router in the throughput benchmark.
    #[arg(long, default_value_t = 1000)]
    router_tenants: usize,
    /// Concurrency per server of the fleet migration.
    #[arg(long, default_value_t = 8)]
    fleet_concurrency: usize,
    /// Usage increments sent in the quota benchmark (by 16 clients).
    #[arg(long, default_value_t = 8000)]
    increments: usize,
    /// Tenants on the one server of the usage sampler benchmark.
    #[arg(long, default_value_t = 1000)]
    sampler_tenants: usize,
    /// Size of the tenant database the move benchmark moves, in MB.
    #[arg(long, default_value_t = 100)]
    move_mb: i64,
    /// Size of the tenant database the backup benchmark backs up and restores, in MB.
    #[arg(long, default_value_t = 200)]
    backup_mb: i64,
    /// Tenants on the server in each run of the point-in-time restore benchmark.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 20, 100])]
    pitr_tenants: Vec<usize>,
    /// Size of each tenant's database in the point-in-time restore benchmark, in MB.
    #[arg(long, default_value_t = 10)]
    pitr_mb: i64,
    /// Requests to each registry in the console overhead benchmark.
    #[arg(long, default_value_t = 4000)]
    console_requests: usize,
    /// Tenant databases behind the router in the skew benchmark (`make bench-scale`).
    #[arg(long, default_value_t = 2000)]
    skew_tenants: usize,
    /// Real tenants on the one server of the fleet-at-scale benchmark (`make bench-scale`).
    #[arg(long, default_value_t = 2000)]
    scale_tenants: usize,
    /// Borrows in each run of the skew benchmark.
    #[arg(long, default_value_t = 40_000)]
    skew_borrows: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    Onboarding,
    Fleet,
    Router,
    Quotas,
    Sampler,
    WarmPool,
    Move,
    Backups,
    PointInTime,
    Console,
    /// The fleet-scale benchmarks (`make bench-scale`), not part of `all`.
    Scale,
    RouterSkew,
    FleetScale,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let breakdown = Breakdown::install()?;
    if matches!(args.only, Which::All | Which::Onboarding) {
        onboarding(args.tenants, &breakdown).await?;
    }
    if matches!(args.only, Which::All | Which::Router) {
        router(args.router_tenants).await?;
    }
    if matches!(args.only, Which::All | Which::Fleet) {
        fleet(args.fleet_tenants, args.fleet_concurrency).await?;
    }
    if matches!(args.only, Which::All | Which::Quotas) {
        quotas(args.increments).await?;
    }
    if matches!(args.only, Which::All | Which::Sampler) {
        sampler(args.sampler_tenants).await?;
    }
    if matches!(args.only, Which::All | Which::WarmPool) {
        warm_pool(args.tenants, &breakdown).await?;
    }
    if matches!(args.only, Which::All | Which::Move) {
        move_tenant(args.move_mb).await?;
    }
    if matches!(args.only, Which::All | Which::Backups) {
        backups(args.backup_mb).await?;
    }
    if matches!(args.only, Which::All | Which::PointInTime) {
        point_in_time(&args.pitr_tenants, args.pitr_mb).await?;
    }
    if matches!(args.only, Which::All | Which::Console) {
        console(args.console_requests).await?;
    }
    if matches!(args.only, Which::Scale | Which::RouterSkew) {
        router_skew(args.skew_tenants, args.skew_borrows).await?;
    }
    if matches!(args.only, Which::Scale | Which::FleetScale) {
        fleet_scale(args.scale_tenants, args.fleet_concurrency).await?;
    }
    Ok(())
}

/// One server (the bench cluster), which also holds the registry database.
fn bench_config(cluster: &PgCluster) -> Result<Config> {
    let mut config = Config::new(cluster.url("tenancy_registry"));
    config.engine.master_key = Some(SecretString::from(tenancy_testkit::MASTER_KEY));
    config.engine.poll_interval = Duration::from_millis(500);
    let mut server = ServerConfig::new(
        "bench-1".parse()?,
        "local".parse()?,
        cluster.host(),
        cluster.port(),
        cluster.admin_user(),
        SecretString::from(cluster.admin_password()),
    );
    server.capacity = 100_000;
    config.servers = vec![server];
    Ok(config)
}

/// Onboards `n` tenants, organizations `first_org` on named `{prefix} {i}`, through the
/// engine's workers, and waits up to `wait` for each to be active.
async fn onboard_all(
    engine: &Engine,
    first_org: usize,
    n: usize,
    prefix: &str,
    wait: Duration,
) -> Result<()> {
    let actor = Actor::named("bench");
    let mut operations = Vec::new();
    for i in 0..n {
        if let Onboarded::Created { operation, .. } = engine
            .onboard(request(first_org + i, &format!("{prefix} {i}"))?, &actor)
            .await?
        {
            operations.push(operation.id);
        }
    }
    for id in operations {
        let op = engine.wait_operation(id, wait).await?;
        if op.state != OperationState::Succeeded {
            bail!("onboarding did not succeed: {op:?}");
        }
    }
    Ok(())
}

fn request(org_id: usize, name: &str) -> Result<CreateTenant> {
    Ok(CreateTenant::new(
        org_id.to_string().parse()?,
        name.parse()?,
    ))
}
