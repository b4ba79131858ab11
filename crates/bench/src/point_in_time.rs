//! Restoring one tenant to a moment from its server's WAL archive, on servers holding 1, 20 and
//! 100 tenants, beside a plain backup restore of the same tenant in the same run: how the
//! recovery grows with the server, and the disk its scratch instance took at its peak.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tenancy_control::{Actor, Engine, ServerArchive};
use tenancy_core::{BackupKind, OperationState, OrgId, RestoreSource};
use tenancy_testkit::{ClusterOptions, PgCluster};

use crate::backups::restored;
use crate::bench_config;
use crate::measure::fmt;
use crate::moves::fill;
use crate::onboarding::onboard_and_connect;

/// One server size's figures.
struct Run {
    tenants: usize,
    server_mb: f64,
    base_backup: Duration,
    point_in_time: Duration,
    backup_restore: Duration,
    scratch_peak_mb: f64,
}

pub(crate) async fn point_in_time(sizes: &[usize], mb: i64) -> Result<()> {
    let mut runs = Vec::new();
    for &tenants in sizes {
        runs.push(one(tenants, mb).await?);
    }
    println!(
        "point-in-time restore: one {mb} MB tenant, its server holding N tenants of {mb} MB \
         (durable server; the baseline restores a backup of the same tenant)"
    );
    println!(
        "  {:>7} {:>10} {:>12} {:>16} {:>16} {:>10} {:>16}",
        "tenants",
        "server MB",
        "base backup",
        "to a moment",
        "from a backup",
        "ratio",
        "scratch disk MB"
    );
    for run in &runs {
        println!(
            "  {:>7} {:>10.0} {:>12} {:>16} {:>16} {:>9.2}x {:>16.0}",
            run.tenants,
            run.server_mb,
            fmt(run.base_backup),
            fmt(run.point_in_time),
            fmt(run.backup_restore),
            run.backup_restore.as_secs_f64() / run.point_in_time.as_secs_f64(),
            run.scratch_peak_mb,
        );
    }
    Ok(())
}

async fn one(tenants: usize, mb: i64) -> Result<Run> {
    let cluster = PgCluster::start_with(ClusterOptions {
        durable: true,
        ..Default::default()
    })?;
    cluster.create_database("tenancy_registry")?;
    let store = tempfile::tempdir()?;
    let scratch = tempfile::tempdir()?;
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))?;
    let mut config = bench_config(&cluster)?;
    config.backups.url = store.path().join("backups").display().to_string();
    config.wal_archive.spool_dir = store.path().join("spool");
    config.wal_archive.scratch_dir = scratch.path().to_owned();
    config.wal_archive.mark_every = Duration::from_secs(1);

    // The tenants first, on a server not archived yet: the base backup then holds them all.
    let engine = Engine::start(config.clone()).await?;
    let workers = engine.run_workers();
    for i in 0..tenants {
        let org = 920_000 + i;
        onboard_and_connect(&engine, &cluster, org).await?;
        let tenant = engine.tenant(&org.to_string().parse()?).await?;
        fill(&cluster, tenant.db_name.as_str(), mb).await?;
    }
    workers.shutdown().await;
    let server_mb: f64 = cluster
        .psql(
            "postgres",
            "SELECT sum(pg_database_size(oid)) / 1e6 FROM pg_database",
        )?
        .parse()?;

    config.servers[0].wal_archive = Some(ServerArchive::default());
    let engine = Engine::start(config).await?;
    let workers = engine.run_workers();
    let org: OrgId = "920000".parse()?;
    let started = Instant::now();
    loop {
        if engine.restore_window(&org).await?.earliest.is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("no base backup within 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let base_backup = started.elapsed();
    let actor = Actor::named("bench");
    let backup = engine
        .request_backup(&org, BackupKind::Manual, &actor)
        .await?;
    let backup = engine
        .wait_operation(backup.id, Duration::from_secs(3600))
        .await?;
    if backup.state != OperationState::Succeeded {
        bail!("backup: {backup:?}");
    }
    let backup = engine.backups(&org, None, 1).await?.remove(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moment = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The scratch directory's size, sampled while the restore runs.
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = tokio::spawn({
        let (peak, dir) = (peak.clone(), scratch.path().to_owned());
        async move {
            loop {
                // A walk of the tree: off the runtime's threads, which keep leases alive.
                let walked = dir.clone();
                let used = tokio::task::spawn_blocking(move || allocated(&walked))
                    .await
                    .unwrap_or(0);
                peak.fetch_max(used, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let point_in_time = restored(&engine, &org, RestoreSource::Moment(moment), &actor).await;
    sampling.abort();
    let point_in_time = point_in_time?;
    let backup_restore = restored(&engine, &org, RestoreSource::Backup(backup.id), &actor).await?;
    workers.shutdown().await;
    Ok(Run {
        tenants,
        server_mb,
        base_backup,
        point_in_time,
        backup_restore,
        scratch_peak_mb: peak.load(Ordering::Relaxed) as f64 / 1e6,
    })
}

/// Bytes allocated under `dir` (sparse files count what they hold, not their length).
fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}
