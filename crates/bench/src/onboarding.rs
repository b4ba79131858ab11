//! Cold onboarding, request to connectable database, beside a raw `CREATE DATABASE ... TEMPLATE`
//! and connect on the same server.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};
use tenancy_control::{Actor, Engine, Onboarded};
use tenancy_core::OperationState;
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::breakdown::Breakdown;
use crate::measure::*;
use crate::{bench_config, request};

/// Onboarding latency, request to connectable database, beside raw `CREATE DATABASE ... TEMPLATE`
/// plus a connection, alternating one of each so both see the same cluster state. Each starts on
/// a settled server (see [`settle`]): otherwise the second of a pair clones while the first
/// one's writes are still landing, and is the slower for it whichever it is. Which of the two
/// goes first alternates too, and the ratio per order shows what is left of that bias.
pub(crate) async fn onboarding(n: usize, breakdown: &Breakdown) -> Result<()> {
    let cluster = PgCluster::start_with(ClusterOptions {
        durable: true,
        ..Default::default()
    })?;
    cluster.create_database("tenancy_registry")?;
    let engine = Engine::start(bench_config(&cluster)?).await?;
    let workers = engine.run_workers();

    let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
    let mut raw = Vec::with_capacity(n);
    let mut raw_clones = Vec::with_capacity(n);
    let (mut answers, mut client_connects) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut engine_times = Vec::with_capacity(n);
    for i in 0..n + 3 {
        let warmup = i < 3;
        if i == 3 {
            breakdown.reset();
        }
        let raw_name = format!("raw_clone_{i}");
        let ((raw_time, raw_clone_time), signup) = if i % 2 == 0 {
            settle(&mut admin).await?;
            let raw_time = raw_clone(&mut admin, &cluster, &raw_name).await?;
            settle(&mut admin).await?;
            let signup = onboard_and_connect(&engine, &cluster, 100_000 + i).await?;
            (raw_time, signup)
        } else {
            settle(&mut admin).await?;
            let signup = onboard_and_connect(&engine, &cluster, 100_000 + i).await?;
            settle(&mut admin).await?;
            (raw_clone(&mut admin, &cluster, &raw_name).await?, signup)
        };
        if !warmup {
            raw.push(raw_time);
            raw_clones.push(raw_clone_time);
            engine_times.push(signup.total);
            answers.push(signup.answered);
            client_connects.push(signup.connected);
        }
    }
    workers.shutdown().await;
    let report = breakdown.take("provision", n);
    let (mut engine_beyond, mut raw_beyond) = beyond_clones(
        &engine_times,
        report.step_values("database"),
        &raw,
        &raw_clones,
    )?;

    // The same ratio over the pairs where each went first, to show the order's bias.
    let by_order = |first: usize| {
        let mut raw: Vec<_> = raw.iter().copied().skip(first).step_by(2).collect();
        let mut eng: Vec<_> = engine_times
            .iter()
            .copied()
            .skip(first)
            .step_by(2)
            .collect();
        percentiles(&mut eng).0.as_secs_f64() / percentiles(&mut raw).0.as_secs_f64()
    };
    // Warm-up took pairs 0 to 2, so the first kept pair (3) had the engine first.
    let (engine_first, raw_first) = (by_order(0), by_order(1));
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
    println!(
        "    p50 ratio when raw went first {raw_first:.2}x, when the engine went first {engine_first:.2}x"
    );
    println!(
        "    the engine's time beyond the clone at p50: {:.1} ms",
        (eng50.as_secs_f64() - raw50.as_secs_f64()) * 1000.0
    );
    // Clones vary with the disk from run to run, much more than the rest: what each adds to
    // its own clone tells which clones the ratio target holds for.
    let raw_clone50 = percentiles(&mut raw_clones).0.as_secs_f64();
    let (engine_beyond, raw_beyond) = (
        percentiles(&mut engine_beyond).0.as_secs_f64(),
        percentiles(&mut raw_beyond).0.as_secs_f64(),
    );
    println!(
        "    beyond its own clone (p50 of each onboarding less its clone): engine {:.1} ms, \
         raw {:.1} ms (its first connection); clones took {:.1} ms",
        engine_beyond * 1000.0,
        raw_beyond * 1000.0,
        raw_clone50 * 1000.0
    );
    println!(
        "    so the engine is within 1.25x of raw for clones of about {:.0} ms or more",
        4.0 * (engine_beyond - 1.25 * raw_beyond).max(0.0) * 1000.0
    );
    println!(
        "    the engine's phases at p50: request answered {:.1} ms, then the client's password and \
         connection {:.1} ms",
        percentiles(&mut answers).0.as_secs_f64() * 1000.0,
        percentiles(&mut client_connects).0.as_secs_f64() * 1000.0
    );
    report.print();
    Ok(())
}

/// What each onboarding took beyond its own clone (its `database` step), and what each raw
/// clone's first connection took: paired, these vary far less than the clones do.
pub(crate) fn beyond_clones(
    engine: &[Duration],
    engine_clones: &[f64],
    raw: &[Duration],
    raw_clones: &[Duration],
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    if engine_clones.len() != engine.len() {
        bail!(
            "{} onboardings ran the database step {} times: a retry?",
            engine.len(),
            engine_clones.len()
        );
    }
    let engine = engine
        .iter()
        .zip(engine_clones)
        .map(|(total, clone)| total.saturating_sub(Duration::from_secs_f64(*clone)))
        .collect();
    let raw = raw
        .iter()
        .zip(raw_clones)
        .map(|(total, clone)| total.saturating_sub(*clone))
        .collect();
    Ok((engine, raw))
}

/// One onboarding, request to a connectable database, and its phases.
pub(crate) struct Signup {
    pub(crate) path: Option<tenancy_core::ProvisionPath>,
    pub(crate) total: Duration,
    /// The request (`onboard_and_wait`, as `POST /v1/tenants?wait=` calls it) until it answers.
    pub(crate) answered: Duration,
    /// The client's part: the tenant's password looked up, a first connection, `SELECT 1`.
    pub(crate) connected: Duration,
}

/// Onboards one tenant and connects as it: the time from request to a connectable database.
pub(crate) async fn onboard_and_connect(
    engine: &Engine,
    cluster: &PgCluster,
    org: usize,
) -> Result<Signup> {
    let request = request(org, &format!("Warm Org {org}"))?;
    let started = Instant::now();
    let Onboarded::Created {
        tenant,
        operation: op,
    } = engine
        .onboard_and_wait(request, &Actor::named("bench"), Duration::from_secs(120))
        .await?
    else {
        bail!("tenant {org} already existed");
    };
    if op.state != OperationState::Succeeded {
        bail!("onboarding {org} did not succeed: {op:?}");
    }
    let answered = started.elapsed();
    let password = engine.tenant_password(&tenant.org_id).await?;
    let mut conn = PgConnection::connect(&cluster.url_as(
        tenant.slug.role_name().as_str(),
        password.expose_secret(),
        tenant.db_name.as_str(),
    ))
    .await
    .context("connecting as the tenant")?;
    sqlx::query("SELECT 1").execute(&mut conn).await?;
    let total = started.elapsed();
    conn.close().await?;
    Ok(Signup {
        path: op.provision_path,
        total,
        answered,
        connected: total - answered,
    })
}
