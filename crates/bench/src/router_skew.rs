//! `make bench-scale`: the router under skew. 2,000 tenant databases on one server, 128
//! borrowers drawing tenants from a Zipf(1.1) distribution (and, beside it, uniformly), a budget
//! of 40 connections, each borrow a `SELECT 1`. The limit is the best any cache of 40
//! connections could do on the same trace: Belady's optimal hit rate, computed offline on the
//! sequence of tenants the borrowers asked for.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use sqlx::{Connection, PgConnection};
use tenancy_core::{ConnectionInfo, OrgId, TenantStatus};
use tenancy_router::{Eviction, RouterConfig, StaticResolver, TenantRouter};
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::measure::*;

const BUDGET: usize = 40;
const BORROWERS: usize = 128;
const FIRST_ORG: usize = 400_000;

/// Draws ranks 0..n with probability proportional to 1 / (rank + 1)^s (inverse CDF).
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                sum += w / total;
                sum
            })
            .collect();
        Self { cdf }
    }

    fn draw(&self) -> usize {
        let u: f64 = rand::random();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

/// The hit rate of Belady's optimal cache of `k` entries on `trace`: on a miss with a full
/// cache, evict the entry used again furthest in the future.
fn belady(trace: &[u32], k: usize) -> f64 {
    let mut next = vec![usize::MAX; trace.len()];
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for (i, t) in trace.iter().enumerate().rev() {
        next[i] = seen.get(t).copied().unwrap_or(usize::MAX);
        seen.insert(*t, i);
    }
    // What each cached entry's next use is; the heap holds (next use, entry), stale pairs
    // skipped when popped.
    let mut cached: HashMap<u32, usize> = HashMap::new();
    let mut heap = BinaryHeap::new();
    let mut hits = 0;
    for (i, t) in trace.iter().enumerate() {
        if cached.contains_key(t) {
            hits += 1;
        } else if cached.len() >= k {
            while let Some((use_at, victim)) = heap.pop() {
                if cached.get(&victim) == Some(&use_at) {
                    cached.remove(&victim);
                    break;
                }
            }
        }
        cached.insert(*t, next[i]);
        heap.push((next[i], *t));
    }
    hits as f64 / trace.len() as f64
}

/// The hit rate of a least-recently-used cache of `k` entries on `trace` (offline, for
/// comparison with the router's own).
fn lru(trace: &[u32], k: usize) -> f64 {
    let mut order: VecDeque<u32> = VecDeque::new();
    let mut hits = 0;
    for t in trace {
        if let Some(at) = order.iter().position(|x| x == t) {
            hits += 1;
            order.remove(at);
        } else if order.len() >= k {
            order.pop_front();
        }
        order.push_back(*t);
    }
    hits as f64 / trace.len() as f64
}

/// One run's figures.
struct Run {
    rate: f64,
    hit_rate: f64,
    optimal: f64,
    lru_offline: f64,
    wait_p50: Duration,
    wait_p99: Duration,
    peak: usize,
    /// Borrows that waited `acquire_timeout` (60 s) in vain.
    timeouts: u64,
}

pub(crate) async fn router_skew(tenants: usize, borrows: usize) -> Result<()> {
    let cluster = PgCluster::start_with(ClusterOptions {
        max_connections: 200,
        ..ClusterOptions::default()
    })?;
    let verifier = tenancy_control::secrets::scram_verifier(
        &"app-password".into(),
        tenancy_control::secrets::DEFAULT_SCRAM_ITERATIONS,
    );
    cluster.psql(
        "postgres",
        &format!("CREATE ROLE app_user LOGIN PASSWORD '{verifier}'"),
    )?;
    let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
    let disk_before = cluster_bytes(&mut admin).await?;
    let started = Instant::now();
    let resolver = Arc::new(StaticResolver::new());
    for i in 0..tenants {
        let db = format!("tenant_skew_{i}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {db} TEMPLATE template0"
        )))
        .execute(&mut admin)
        .await?;
        resolver.set(info(&cluster, FIRST_ORG + i, &db)?);
    }
    let disk = cluster_bytes(&mut admin).await? - disk_before;
    println!(
        "router under skew: {tenants} tenant databases made in {:.0} s, {} of disk ({} each)",
        started.elapsed().as_secs_f64(),
        bytes(disk),
        bytes(disk / tenants as i64)
    );

    let zipf = Arc::new(Zipf::new(tenants, 1.1));
    let draw_zipf = {
        let zipf = zipf.clone();
        Arc::new(move || zipf.draw()) as Arc<dyn Fn() -> usize + Send + Sync>
    };
    let draw_uniform =
        Arc::new(move || rand::random_range(0..tenants)) as Arc<dyn Fn() -> usize + Send + Sync>;
    println!(
        "  {BORROWERS} borrowers, budget {BUDGET} connections, {borrows} borrows a run, each a SELECT 1"
    );
    println!(
        "  {:<42} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9} {:>6}",
        "access / eviction",
        "borrows/s",
        "hit rate",
        "optimal",
        "ratio",
        "wait p50",
        "wait p99",
        "peak"
    );
    // What a cache that always held the most popular tenants would hit.
    let (zipf_top, uniform_top) = (zipf.cdf[BUDGET - 1], BUDGET as f64 / tenants as f64);
    let fair = RouterConfig::default().fair_wait;
    let ms = Duration::from_millis;
    for (label, draw, eviction, top, fair_wait) in [
        (
            "Zipf(1.1) / least recently used",
            &draw_zipf,
            Eviction::Lru,
            zipf_top,
            fair,
        ),
        (
            "Zipf(1.1) / frequency",
            &draw_zipf,
            Eviction::Frequency,
            zipf_top,
            fair,
        ),
        (
            "Zipf(1.1) / frequency, fair wait 100 ms",
            &draw_zipf,
            Eviction::Frequency,
            zipf_top,
            ms(100),
        ),
        (
            "Zipf(1.1) / frequency, fair wait 2 s",
            &draw_zipf,
            Eviction::Frequency,
            zipf_top,
            ms(2000),
        ),
        (
            "uniform / least recently used",
            &draw_uniform,
            Eviction::Lru,
            uniform_top,
            fair,
        ),
        (
            "uniform / frequency",
            &draw_uniform,
            Eviction::Frequency,
            uniform_top,
            fair,
        ),
    ] {
        let run = run(
            &cluster,
            resolver.clone(),
            draw.clone(),
            eviction,
            fair_wait,
            borrows,
        )
        .await?;
        println!(
            "  {:<42} {:>9} {:>9.3} {:>9.3} {:>6.2}x {:>9} {:>9} {:>6}",
            label,
            format!("{:.0}", run.rate),
            run.hit_rate,
            run.optimal,
            run.hit_rate / run.optimal,
            fmt(run.wait_p50),
            fmt(run.wait_p99),
            run.peak
        );
        println!(
            "    (offline on the same trace: least recently used {:.3}, static top-{BUDGET} {:.3}; {} borrows timed out)",
            run.lru_offline, top, run.timeouts
        );
    }

    // The cost of one miss: a borrow of a tenant with no idle connection (its pool closed
    // first), beside a raw connect with the same role, password and database.
    let router = TenantRouter::new(
        resolver.clone(),
        RouterConfig {
            watch_changes: false,
            ..RouterConfig::default()
        },
    );
    let org: OrgId = FIRST_ORG.to_string().parse()?;
    let mut pg = tokio_postgres::Config::new();
    pg.host(cluster.host())
        .port(cluster.port())
        .user("app_user")
        .password("app-password")
        .dbname("tenant_skew_0");
    let (mut missed, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        router.invalidate(&org);
        let started = Instant::now();
        let client = router.get(&org).await?;
        client.simple_query("SELECT 1").await?;
        missed.push(started.elapsed());
        drop(client);
        let started = Instant::now();
        let (client, connection) = pg.connect(tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        client.simple_query("SELECT 1").await?;
        raw.push(started.elapsed());
        drop(client);
        driver.await??;
    }
    let (m50, m99) = percentiles(&mut missed);
    let (r50, r99) = percentiles(&mut raw);
    println!(
        "  one miss (backend start + SCRAM + SELECT 1): router p50 {} p99 {}; raw connect p50 {} p99 {} ({:.2}x)",
        fmt(m50),
        fmt(m99),
        fmt(r50),
        fmt(r99),
        m50.as_secs_f64() / r50.as_secs_f64()
    );
    for i in 0..tenants {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE tenant_skew_{i} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
    }
    Ok(())
}

fn info(cluster: &PgCluster, org: usize, db: &str) -> Result<ConnectionInfo> {
    Ok(ConnectionInfo {
        org_id: org.to_string().parse()?,
        host: cluster.host().into(),
        port: cluster.port(),
        dbname: db.parse()?,
        user: "app_user".parse()?,
        password: Some("app-password".into()),
        server_id: "bench-1".parse()?,
        status: TenantStatus::Active,
        tier: "free".parse()?,
        kind: tenancy_core::TenantKind::Standalone,
        parent_org_id: None,
        agency_status: None,
        pool_size: 2,
        sslmode: tenancy_core::SslMode::Disable,
        ca_pem: None,
    })
}

/// `borrows` borrows by [`BORROWERS`] tasks on a fresh router, tenants drawn by `draw` and
/// recorded in the order they were asked for.
async fn run(
    cluster: &PgCluster,
    resolver: Arc<StaticResolver>,
    draw: Arc<dyn Fn() -> usize + Send + Sync>,
    eviction: Eviction,
    fair_wait: Duration,
    borrows: usize,
) -> Result<Run> {
    let router = TenantRouter::new(
        resolver,
        RouterConfig {
            per_server_budget: BUDGET,
            eviction,
            fair_wait,
            acquire_timeout: Duration::from_secs(60),
            watch_changes: false,
            ..RouterConfig::default()
        },
    );
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, peak, url) = (done.clone(), peak.clone(), cluster.url("postgres"));
        tokio::spawn(async move {
            let mut conn = PgConnection::connect(&url).await?;
            while !done.load(Ordering::SeqCst) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenancy-router'",
                )
                .fetch_one(&mut conn)
                .await?;
                peak.fetch_max(n as usize, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, anyhow::Error>(())
        })
    };
    let trace = Arc::new(Mutex::new(Vec::with_capacity(borrows)));
    let waits = Arc::new(Mutex::new(Vec::with_capacity(borrows)));
    let left = Arc::new(AtomicU64::new(borrows as u64));
    let timeouts = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..BORROWERS)
        .map(|_| {
            let (router, draw, trace, waits, left, timeouts) = (
                router.clone(),
                draw.clone(),
                trace.clone(),
                waits.clone(),
                left.clone(),
                timeouts.clone(),
            );
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let tenant = {
                        let mut trace = trace.lock().expect("trace");
                        let tenant = draw();
                        trace.push(tenant as u32);
                        tenant
                    };
                    let org: OrgId = (FIRST_ORG + tenant).to_string().parse()?;
                    let asked = Instant::now();
                    match router.get(&org).await {
                        Ok(client) => {
                            waits.lock().expect("waits").push(asked.elapsed());
                            client.simple_query("SELECT 1").await?;
                        }
                        Err(tenancy_router::RouterError::PoolTimeout { .. }) => {
                            timeouts.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::SeqCst);
    sampler.await??;
    let stats = router.stats();
    let trace = std::mem::take(&mut *trace.lock().expect("trace"));
    let mut waits = std::mem::take(&mut *waits.lock().expect("waits"));
    let (wait_p50, wait_p99) = percentiles(&mut waits);
    Ok(Run {
        rate: stats.borrows as f64 / elapsed.as_secs_f64(),
        hit_rate: 1.0 - stats.connections_opened as f64 / stats.borrows.max(1) as f64,
        optimal: belady(&trace, BUDGET),
        lru_offline: lru(&trace, BUDGET),
        wait_p50,
        wait_p99,
        peak: peak.load(Ordering::SeqCst),
        timeouts: timeouts.load(Ordering::SeqCst),
    })
}

async fn cluster_bytes(admin: &mut PgConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT sum(pg_database_size(datname))::bigint FROM pg_database")
            .fetch_one(admin)
            .await?,
    )
}

fn bytes(n: i64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn belady_beats_lru_on_a_loop_one_larger_than_the_cache() {
        // 1,2,3,1,2,3,... with two slots: LRU never hits; the optimal keeps one of them.
        let trace: Vec<u32> = (0..300).map(|i| i % 3).collect();
        assert_eq!(lru(&trace, 2), 0.0);
        let optimal = belady(&trace, 2);
        assert!((0.49..0.51).contains(&optimal), "{optimal}");
    }
}
