//! Moving a tenant's database under writes beside `pg_dump | pg_restore` between the same
//! servers.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};
use tenancy_control::{Actor, Engine};
use tenancy_core::OperationState;
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::bench_config;
use crate::measure::*;
use crate::onboarding::*;

/// Moving a tenant of `mb` MB between two durable servers (`wal_level = logical`) while a writer
/// inserts into it: online there, offline back, beside a plain `pg_dump | pg_restore` of the
/// same database between the same servers in the same run.
pub(crate) async fn move_tenant(mb: i64) -> Result<()> {
    let options = ClusterOptions {
        durable: true,
        ..Default::default()
    }
    .logical();
    let (a, b) = (
        PgCluster::start_with(options.clone())?,
        PgCluster::start_with(options)?,
    );
    a.create_database("tenancy_registry")?;
    let mut config = bench_config(&a)?;
    let mut second = config.servers[0].clone();
    second.id = "bench-2".parse()?;
    second.port = b.port();
    second.capacity = 0;
    config.servers.push(second);
    let engine = Engine::start(config).await?;
    let workers = engine.run_workers();
    let org: tenancy_core::OrgId = "900001".parse()?;
    onboard_and_connect(&engine, &a, 900_001).await?;
    let tenant = engine.tenant(&org).await?;
    let db = tenant.db_name.to_string();
    fill(&a, &db, mb).await?;
    let size: i64 = {
        let mut conn = PgConnection::connect(&a.url("postgres")).await?;
        sqlx::query_scalar("SELECT pg_database_size($1)")
            .bind(&db)
            .fetch_one(&mut conn)
            .await?
    };
    sqlx::query("UPDATE database_servers SET capacity = 100000 WHERE id = 'bench-2'")
        .execute(&mut PgConnection::connect(&a.url("tenancy_registry")).await?)
        .await?;

    // Baseline: the same database dumped and restored between the same servers (its grants
    // name the tenant's role, which a plain restore needs to exist).
    b.create_database("baseline_copy")?;
    let role = tenant.role_name();
    b.psql("postgres", &format!("CREATE ROLE {role} NOLOGIN"))?;
    let bin = tenancy_testkit::pg_bin_dir().context("PostgreSQL binaries")?;
    let started = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{dump} -Fc --compress=0 -h 127.0.0.1 -p {ap} -U postgres {db} | \
             {restore} --no-owner --single-transaction --exit-on-error -h 127.0.0.1 -p {bp} -U postgres -d baseline_copy",
            dump = bin.join("pg_dump").display(),
            restore = bin.join("pg_restore").display(),
            ap = a.port(),
            bp = b.port(),
        ))
        .env("PGPASSWORD", a.admin_password())
        .status()?;
    if !status.success() {
        bail!("pg_dump | pg_restore failed");
    }
    let baseline = started.elapsed();
    b.psql("postgres", "DROP DATABASE baseline_copy")?;
    b.psql("postgres", &format!("DROP ROLE {role}"))?;

    let password = engine.tenant_password(&org).await?;
    let online = timed_move(
        &engine,
        &tenant,
        &[&a, &b],
        password.expose_secret(),
        "bench-2",
        None,
    )
    .await?;
    let offline = timed_move(
        &engine,
        &tenant,
        &[&a, &b],
        password.expose_secret(),
        "bench-1",
        Some(tenancy_core::MoveMode::Offline),
    )
    .await?;
    workers.shutdown().await;

    let mbps = |d: Duration| size as f64 / 1e6 / d.as_secs_f64();
    println!(
        "move: a {:.0} MB tenant between two durable servers, a writer inserting throughout",
        size as f64 / 1e6
    );
    println!(
        "  {:<40} {:>10} {:>10} {:>10} {:>8}",
        "", "total", "downtime", "MB/s", "ratio"
    );
    println!(
        "  {:<40} {:>10} {:>10} {:>10.1} {:>8}",
        "pg_dump | pg_restore (baseline)",
        fmt(baseline),
        "(all)",
        mbps(baseline),
        "1.00x"
    );
    for (name, (total, downtime, writes)) in [
        ("online move (logical replication)", online),
        ("offline move (back)", offline),
    ] {
        println!(
            "  {:<40} {:>10} {:>10} {:>10.1} {:>7.2}x   ({writes} writes acknowledged)",
            name,
            fmt(total),
            format!("{downtime} ms"),
            mbps(total),
            total.as_secs_f64() / baseline.as_secs_f64(),
        );
    }
    Ok(())
}

/// Moves the tenant to `to` while a writer inserts as the tenant's role (reconnecting wherever
/// the registry says it is); returns the move's total time, its downtime and the writes made.
pub(crate) async fn timed_move(
    engine: &Engine,
    tenant: &tenancy_core::Tenant,
    clusters: &[&PgCluster; 2],
    password: &str,
    to: &str,
    mode: Option<tenancy_core::MoveMode>,
) -> Result<(Duration, i64, usize)> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let urls: Vec<String> = clusters
        .iter()
        .map(|c| {
            c.url_as(
                tenant.role_name().as_str(),
                password,
                tenant.db_name.as_str(),
            )
        })
        .collect();
    let writer = tokio::spawn({
        let (stop, engine, org) = (stop.clone(), engine.clone(), tenant.org_id.clone());
        async move {
            let mut writes = 0usize;
            let mut conn: Option<PgConnection> = None;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if conn.is_none() {
                    let at = engine.tenant(&org).await.ok().and_then(|t| t.server_id);
                    let url = if at.as_ref().map(|s| s.as_str()) == Some("bench-2") {
                        &urls[1]
                    } else {
                        &urls[0]
                    };
                    conn = PgConnection::connect(url).await.ok();
                }
                if let Some(c) = conn.as_mut() {
                    match sqlx::query("INSERT INTO activity_log (action) VALUES ('write')")
                        .execute(c)
                        .await
                    {
                        Ok(_) => writes += 1,
                        Err(_) => conn = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            writes
        }
    });
    let started = Instant::now();
    let request = tenancy_core::MoveTenant {
        server_id: Some(to.parse()?),
        mode,
    };
    let op = engine
        .move_tenant(&tenant.org_id, &request, &Actor::named("bench"))
        .await?;
    let op = engine
        .wait_operation(op.id, Duration::from_secs(3600))
        .await?;
    let total = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let writes = writer.await?;
    if op.state != OperationState::Succeeded {
        bail!("move to {to} failed: {:?}", op.last_error);
    }
    let m = engine.tenant_moves(&tenant.org_id, 1).await?.remove(0);
    Ok((total, m.downtime_ms.unwrap_or_default(), writes))
}

/// Rows of incompressible text in the tenant's `activity_log` until its database holds `mb` MB.
pub(crate) async fn fill(cluster: &PgCluster, db: &str, mb: i64) -> Result<()> {
    let mut admin = PgConnection::connect(&cluster.url(db)).await?;
    loop {
        let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&mut admin)
            .await?;
        if size >= mb * 1_000_000 {
            break;
        }
        sqlx::query(
            "INSERT INTO activity_log (action, detail)
             SELECT 'bench', jsonb_build_object('text', array_to_string(
                 ARRAY(SELECT md5(random()::text || n.i) FROM generate_series(1, 30)), ''))
             FROM generate_series(1, 5000) AS n(i)",
        )
        .execute(&mut admin)
        .await?;
    }
    admin.close().await?;
    Ok(())
}
