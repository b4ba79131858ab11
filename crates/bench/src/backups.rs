//! Backing a tenant up and restoring it beside plain `pg_dump -Fc` to a file and `pg_restore` of
//! the same database, in the same run, on the same durable server; and this process's peak
//! memory while it backs up (it must not grow with the tenant's size).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tenancy_control::{Actor, Engine};
use tenancy_core::{BackupKind, OperationState, OrgId};
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::bench_config;
use crate::measure::fmt;
use crate::moves::fill;
use crate::onboarding::onboard_and_connect;

pub(crate) async fn backups(mb: i64) -> Result<()> {
    let cluster = PgCluster::start_with(ClusterOptions {
        durable: true,
        ..Default::default()
    })?;
    cluster.create_database("tenancy_registry")?;
    let store = tempfile::tempdir()?;
    let mut config = bench_config(&cluster)?;
    config.backups.url = store.path().display().to_string();
    let engine = Engine::start(config).await?;
    let workers = engine.run_workers();
    let org: OrgId = "910001".parse()?;
    onboard_and_connect(&engine, &cluster, 910_001).await?;
    let tenant = engine.tenant(&org).await?;
    let db = tenant.db_name.to_string();
    fill(&cluster, &db, mb).await?;
    cluster.psql("postgres", "CHECKPOINT")?;
    let size: f64 = cluster
        .psql("postgres", &format!("SELECT pg_database_size('{db}')"))?
        .parse()?;

    // Baselines: pg_dump -Fc (its default compression, as the backup) to a file, and
    // pg_restore of that file into a fresh database, one transaction.
    let bin = tenancy_testkit::pg_bin_dir().context("PostgreSQL binaries")?;
    let file = store.path().join("baseline.dump");
    let shell = |command: String| -> Result<Duration> {
        let started = Instant::now();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("PGPASSWORD", cluster.admin_password())
            .status()?;
        if !status.success() {
            bail!("{command} failed");
        }
        Ok(started.elapsed())
    };
    let connection = format!("-h 127.0.0.1 -p {} -U postgres", cluster.port());
    let dump = shell(format!(
        "{} -Fc {connection} -f {} {db}",
        bin.join("pg_dump").display(),
        file.display()
    ))?;
    cluster.psql(
        "postgres",
        "CREATE DATABASE baseline_restore TEMPLATE template0",
    )?;
    let restore = shell(format!(
        "{} --single-transaction --exit-on-error {connection} -d baseline_restore {}",
        bin.join("pg_restore").display(),
        file.display()
    ))?;
    cluster.psql("postgres", "DROP DATABASE baseline_restore")?;
    std::fs::remove_file(&file)?;

    // The backup, with this process's peak memory reset first (Linux: clear_refs 5).
    let rss_before = memory("VmRSS")?;
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS")?;
    let actor = Actor::named("bench");
    let started = Instant::now();
    let op = engine
        .request_backup(&org, BackupKind::Manual, &actor)
        .await?;
    let op = engine
        .wait_operation(op.id, Duration::from_secs(3600))
        .await?;
    let backup_total = started.elapsed();
    let peak = memory("VmHWM")?;
    if op.state != OperationState::Succeeded {
        bail!("backup: {op:?}");
    }
    let backup = engine.backups(&org, None, 1).await?.remove(0);
    let dumped = Duration::from_millis(backup.duration_ms.unwrap_or(0) as u64);

    // Restoring: into a scratch database and counted (the restore's own stage), then a whole
    // restore in place (its safeguard backup, restore, verification and swap).
    let started = Instant::now();
    let (whole, _) = engine.verify_backup(&org, backup.id).await?;
    let verify = started.elapsed();
    if !whole {
        bail!("the backup did not verify");
    }
    let in_place = restored(
        &engine,
        &org,
        tenancy_core::RestoreSource::Backup(backup.id),
        &actor,
    )
    .await?;
    workers.shutdown().await;

    let mbps = |d: Duration| size / 1e6 / d.as_secs_f64();
    let ratio = |ours: Duration, base: Duration| base.as_secs_f64() / ours.as_secs_f64();
    println!(
        "backups: a {:.0} MB tenant database ({:.0} MB archive, {:.0} MB stored) on a durable server",
        size / 1e6,
        backup.size_bytes.unwrap_or(0) as f64 / 1e6,
        backup.stored_bytes.unwrap_or(0) as f64 / 1e6,
    );
    println!(
        "  {:<52} {:>10} {:>8} {:>16}",
        "", "time", "MB/s", "throughput ratio"
    );
    for (name, time, base) in [
        ("pg_dump -Fc to a file (baseline)", dump, dump),
        (
            "backup: dump, encrypt, store (target >= 0.80x)",
            dumped,
            dump,
        ),
        (
            "backup operation, with its read-back check",
            backup_total,
            dump,
        ),
        ("pg_restore of that file (baseline)", restore, restore),
        (
            "restore into a scratch db + counts (target >= 0.70x)",
            verify,
            restore,
        ),
        (
            "restore in place: safeguard backup, restore, swap",
            in_place,
            restore,
        ),
    ] {
        println!(
            "  {:<52} {:>10} {:>8.1} {:>15.2}x",
            name,
            fmt(time),
            mbps(time),
            ratio(time, base)
        );
    }
    println!(
        "  registry process memory during the backup: {:.0} MB resident before, {:.0} MB peak",
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    Ok(())
}

/// Restores `org` in place from `source` and waits until the restore succeeded; how long it
/// took, from the request.
pub(crate) async fn restored(
    engine: &Engine,
    org: &OrgId,
    source: tenancy_core::RestoreSource,
    actor: &Actor,
) -> Result<Duration> {
    let started = Instant::now();
    let op = engine.request_restore(org, source, actor).await?;
    let op = engine
        .wait_operation(op.id, Duration::from_secs(3600))
        .await?;
    let took = started.elapsed();
    if op.state != OperationState::Succeeded {
        bail!("restore from {source:?}: {op:?}");
    }
    Ok(took)
}

/// A `/proc/self/status` figure, in kB.
fn memory(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}
