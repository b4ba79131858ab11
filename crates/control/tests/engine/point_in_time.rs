//! Point-in-time restores of one tenant from its server's WAL archive: the keeper archives the
//! server (base backup, segments, marks), and a restore to a moment between two writes holds
//! the first and not the second, in place and into a new tenant, also across a restart of the
//! keeper between the writes; a moment before the window is refused with the window.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use chrono::Utc;
use tenancy_control::{Config, Engine, ServerArchive};
use tenancy_core::{OperationState, RestoreSource, Tenant};
use tenancy_testkit::{TestFleet, eventually};

use crate::helpers::*;

/// The fleet's configuration with pg-1's WAL archived, marks every second, and a scratch
/// directory the unprivileged user scratch instances run as (when we are root) can reach.
fn archived(fleet: &TestFleet, scratch: &tempfile::TempDir) -> Config {
    let mut config = config(fleet);
    for server in &mut config.servers {
        server.wal_archive = Some(ServerArchive::default());
    }
    config.wal_archive.mark_every = Duration::from_secs(1);
    config.wal_archive.spool_dir = fleet.dir().join("wal-spool");
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    config.wal_archive.scratch_dir = scratch.path().to_owned();
    config
}

/// The cluster the tenant is on now.
fn home<'a>(fleet: &'a TestFleet, tenant: &Tenant) -> &'a tenancy_testkit::PgCluster {
    fleet.cluster(tenant.server_id.as_ref().unwrap().as_str())
}

async fn write(engine: &Engine, fleet: &TestFleet, tenant: &Tenant, what: &str) {
    let mut conn = connect_own(engine, home(fleet, tenant), tenant)
        .await
        .unwrap();
    sqlx::query("INSERT INTO activity_log (action) VALUES ($1)")
        .bind(what)
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Makes a large object holding `what`, as the tenant.
async fn large_object(engine: &Engine, fleet: &TestFleet, tenant: &Tenant, what: &str) {
    let mut conn = connect_own(engine, home(fleet, tenant), tenant)
        .await
        .unwrap();
    sqlx::query("SELECT lo_from_bytea(0, convert_to($1, 'UTF8'))")
        .bind(what)
        .execute(&mut conn)
        .await
        .unwrap();
}

/// The tenant's large objects' contents, with their owners.
async fn large_objects(engine: &Engine, fleet: &TestFleet, tenant: &Tenant) -> Vec<String> {
    let mut conn = connect_own(engine, home(fleet, tenant), tenant)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT pg_get_userbyid(lomowner)::text || ':' || convert_from(lo_get(oid), 'UTF8')
         FROM pg_largeobject_metadata ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

async fn actions(engine: &Engine, fleet: &TestFleet, tenant: &Tenant) -> Vec<String> {
    let mut conn = connect_own(engine, home(fleet, tenant), tenant)
        .await
        .unwrap();
    sqlx::query_scalar("SELECT action FROM activity_log ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Waits until the tenant's window is open (a base backup stored, WAL after it).
async fn window_open(engine: &Engine, tenant: &Tenant) {
    eventually(
        Duration::from_secs(60),
        "the restore window opens",
        || async {
            let window = engine.restore_window(&tenant.org_id).await.unwrap();
            window.earliest.is_some().then_some(())
        },
    )
    .await;
}

async fn restore_to(
    engine: &Engine,
    tenant: &Tenant,
    moment: chrono::DateTime<Utc>,
) -> tenancy_core::Operation {
    let op = engine
        .request_restore(&tenant.org_id, RestoreSource::Moment(moment), &actor())
        .await
        .unwrap();
    engine
        .wait_operation(op.id, Duration::from_secs(180))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_comes_back_to_a_moment_between_two_writes() {
    let fleet = TestFleet::single().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let engine = Engine::start(archived(&fleet, &scratch)).await.unwrap();
    let workers = engine.run_workers();
    let tenant = onboard(&engine, request("9701", "Recovered")).await;
    let other = onboard(&engine, request("9702", "Neighbour")).await;
    write(&engine, &fleet, &other, "neighbour's").await;

    // Before the archive has a base backup, nothing is reachable: refused with the window.
    let refused = engine
        .request_restore(&tenant.org_id, RestoreSource::Moment(Utc::now()), &actor())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tenancy_core::ErrorCode::OutsideRestoreWindow,
        "{refused}"
    );

    window_open(&engine, &tenant).await;
    write(&engine, &fleet, &tenant, "first").await;
    large_object(&engine, &fleet, &tenant, "kept").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moment = Utc::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The keeper stops and another starts between the writes (a restart, or a takeover).
    workers.shutdown().await;
    std::mem::forget(engine.run_workers());
    write(&engine, &fleet, &tenant, "second").await;
    large_object(&engine, &fleet, &tenant, "undone").await;

    let op = restore_to(&engine, &tenant, moment).await;
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let now = actions(&engine, &fleet, &tenant).await;
    assert!(now.contains(&"first".to_owned()), "{now:?}");
    assert!(!now.contains(&"second".to_owned()), "{now:?}");
    // Large objects come back as they were, with their owner (the tenant's role).
    let role = tenant.role_name().to_string();
    assert_eq!(
        large_objects(&engine, &fleet, &tenant).await,
        vec![format!("{role}:kept")]
    );
    // The neighbour on the same server is untouched.
    assert!(
        actions(&engine, &fleet, &other)
            .await
            .contains(&"neighbour's".to_owned())
    );
    // The scratch instance is gone.
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);

    // Into a new tenant: the copy holds "first", the source keeps what it has now.
    write(&engine, &fleet, &tenant, "third").await;
    let op = engine
        .request_restore_copy(
            &tenant.org_id,
            RestoreSource::Moment(moment),
            &org("9703"),
            "Recovered copy".parse().unwrap(),
            &actor(),
        )
        .await
        .unwrap();
    let op = engine
        .wait_operation(op.id, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let copy = engine.tenant(&org("9703")).await.unwrap();
    let copied = actions(&engine, &fleet, &copy).await;
    assert!(copied.contains(&"first".to_owned()), "{copied:?}");
    assert!(!copied.contains(&"second".to_owned()), "{copied:?}");
    assert!(
        actions(&engine, &fleet, &tenant)
            .await
            .contains(&"third".to_owned())
    );

    // A moment before the window is refused, with the window in the error.
    let window = engine.restore_window(&tenant.org_id).await.unwrap();
    let before = window.earliest.unwrap() - chrono::Duration::seconds(30);
    match engine
        .request_restore(&tenant.org_id, RestoreSource::Moment(before), &actor())
        .await
        .unwrap_err()
    {
        tenancy_control::ControlError::OutsideRestoreWindow { window: given, .. } => {
            assert_eq!(given.earliest, window.earliest);
        }
        other => panic!("{other}"),
    }
    let status = engine.wal_status().await.unwrap();
    let mut registry = registry(&fleet).await;
    let stored: Vec<i64> = sqlx::query_scalar("SELECT segno FROM wal_segments ORDER BY segno")
        .fetch_all(&mut registry)
        .await
        .unwrap();
    assert_eq!(status[0].gaps, 0, "{status:?} {stored:?}");
    assert!(status[0].base_backups >= 1, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tenant_comes_back_from_the_server_it_was_on_at_the_moment() {
    let fleet = TestFleet::builder()
        .server("pg-1", "local")
        .server("pg-2", "local")
        .build()
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let engine = Engine::start(archived(&fleet, &scratch)).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("9711", "Mover")).await;
    window_open(&engine, &tenant).await;
    write(&engine, &fleet, &tenant, "first").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moment = Utc::now();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let from = tenant.server_id.clone().unwrap();
    let to = if from.as_str() == "pg-1" {
        "pg-2"
    } else {
        "pg-1"
    };
    let request = tenancy_core::MoveTenant {
        server_id: Some(to.parse().unwrap()),
        mode: Some(tenancy_core::MoveMode::Offline),
    };
    let op = engine
        .move_tenant(&tenant.org_id, &request, &actor())
        .await
        .unwrap();
    let op = engine
        .wait_operation(op.id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let tenant = engine.tenant(&tenant.org_id).await.unwrap();
    assert_eq!(tenant.server_id.as_ref().unwrap().as_str(), to);
    write(&engine, &fleet, &tenant, "second").await;

    let op = restore_to(&engine, &tenant, moment).await;
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let now = actions(&engine, &fleet, &tenant).await;
    assert_eq!(now, vec!["first".to_owned()]);
    // Recovered from the server it was on at the moment, restored where it is now.
    let mut registry = registry(&fleet).await;
    let recovered_from: Option<String> =
        sqlx::query_scalar("SELECT recovered_from FROM tenant_restores WHERE operation_id = $1")
            .bind(op.id)
            .fetch_one(&mut registry)
            .await
            .unwrap();
    assert_eq!(recovered_from.as_deref(), Some(from.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_archive_is_reported_and_the_window_starts_after_it() {
    let fleet = TestFleet::single().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let engine = Engine::start(archived(&fleet, &scratch)).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("9721", "Gapped")).await;
    window_open(&engine, &tenant).await;
    let cluster = fleet.cluster("pg-1");
    for _ in 0..3 {
        write(&engine, &fleet, &tenant, "more").await;
        cluster.psql("postgres", "SELECT pg_switch_wal()").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eventually(Duration::from_secs(30), "three more segments", || async {
        let status = engine.wal_status().await.unwrap();
        (status[0].segments >= 5).then_some(())
    })
    .await;
    assert_eq!(engine.wal_status().await.unwrap()[0].gaps, 0);

    // A segment lost from the archive (deleted by hand, say), before the newest one.
    let opened = engine
        .restore_window(&tenant.org_id)
        .await
        .unwrap()
        .earliest
        .unwrap();
    let lost_at = Utc::now();
    // Every archived object has its row so far, and every row its object.
    let archive_findings = || async {
        engine
            .reconcile(tenancy_control::Repair::Nothing)
            .await
            .unwrap()
            .into_iter()
            .filter(|f| {
                matches!(
                    f.kind,
                    tenancy_control::FindingKind::OrphanBackupObject
                        | tenancy_control::FindingKind::MissingBackupObject
                ) && f.name.starts_with("wal/")
            })
            .map(|f| f.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(archive_findings().await, Vec::<String>::new());
    let mut registry = registry(&fleet).await;
    let lost: String = sqlx::query_scalar(
        "DELETE FROM wal_segments WHERE server_id = 'pg-1' AND segno =
             (SELECT max(segno) - 1 FROM wal_segments WHERE server_id = 'pg-1')
         RETURNING object_key",
    )
    .fetch_one(&mut registry)
    .await
    .unwrap();
    // Its object is reported: in the store, recorded nowhere.
    assert_eq!(archive_findings().await, vec![lost]);
    let status = engine.wal_status().await.unwrap();
    assert_eq!(status[0].gaps, 1, "{status:?}");
    // What lies before the gap is not provable any more: the window starts after it (empty
    // until the keeper's next base backup, which it takes at once for a window it lost).
    let window = engine.restore_window(&tenant.org_id).await.unwrap();
    assert!(window.earliest.is_none_or(|e| e > lost_at), "{window:?}");
    let refused = engine
        .request_restore(&tenant.org_id, RestoreSource::Moment(opened), &actor())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tenancy_core::ErrorCode::OutsideRestoreWindow
    );
    let reopened = eventually(
        Duration::from_secs(60),
        "a base backup after the gap",
        || async {
            engine
                .restore_window(&tenant.org_id)
                .await
                .unwrap()
                .earliest
        },
    )
    .await;
    assert!(reopened > lost_at);
}

#[tokio::test]
async fn scratch_instances_of_restores_no_longer_running_are_swept() {
    let fleet = TestFleet::single().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let engine = Engine::start(archived(&fleet, &scratch)).await.unwrap();
    // What a registry killed in the middle of a recovery leaves.
    let left = scratch.path().join(format!("{}.1", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(left.join("data/base")).unwrap();
    std::fs::write(left.join("data/PG_VERSION"), "15\n").unwrap();
    let unrelated = scratch.path().join("not-a-restore");
    std::fs::create_dir_all(&unrelated).unwrap();
    assert_eq!(engine.sweep_scratch().await.unwrap(), 1);
    assert!(!left.exists());
    assert!(unrelated.exists(), "only what a restore names is swept");
}
