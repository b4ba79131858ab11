//! Backups and restores of one tenant: the stored object is encrypted and checked, its export is
//! the `pg_dump` archive, a restore in place brings rows and large objects back with their
//! owners, a tampered or truncated object is refused with the live tenant untouched, a crash at
//! every step resumes, an S3-protocol store works as the filesystem does, and a purge erases
//! everything.

use std::time::Duration;

use tenancy_control::Engine;
use tenancy_control::faults::Moment;
use tenancy_core::{
    Backup, BackupKind, BackupState, ErrorCode, OperationKind, OperationState, RestoreSource,
    Tenant,
};
use tenancy_testkit::{S3Server, TestFleet};
use tokio::io::AsyncReadExt;

use crate::helpers::*;

async fn backed_up(engine: &Engine, tenant: &Tenant) -> Backup {
    let op = engine
        .request_backup(&tenant.org_id, BackupKind::Manual, &actor())
        .await
        .unwrap();
    let op = engine
        .wait_operation(op.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let page = engine.backups(&tenant.org_id, None, 10).await.unwrap();
    page.into_iter()
        .find(|b| b.operation_id == op.id)
        .expect("the backup in the catalog")
}

async fn restored(engine: &Engine, tenant: &Tenant, backup: &Backup) -> tenancy_core::Operation {
    let op = engine
        .request_restore(&tenant.org_id, RestoreSource::Backup(backup.id), &actor())
        .await
        .unwrap();
    engine
        .wait_operation(op.id, Duration::from_secs(90))
        .await
        .unwrap()
}

/// What the tenant's role sees: members, activity rows, large objects and their owners.
async fn fingerprint(
    engine: &Engine,
    fleet: &TestFleet,
    tenant: &Tenant,
) -> (i64, i64, Vec<String>) {
    let mut conn = connect_own(engine, fleet.cluster("pg-1"), tenant)
        .await
        .unwrap();
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM members")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let activity: i64 = sqlx::query_scalar("SELECT count(*) FROM activity_log")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let objects: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(lomowner)::text || ':' || md5(lo_get(oid))
         FROM pg_largeobject_metadata ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    (members, activity, objects)
}

/// The tenant's data changed after the backup: rows deleted, a large object unlinked.
async fn damage(engine: &Engine, fleet: &TestFleet, tenant: &Tenant) {
    let mut conn = connect_own(engine, fleet.cluster("pg-1"), tenant)
        .await
        .unwrap();
    sqlx::raw_sql(
        "DELETE FROM activity_log; DELETE FROM team_members; DELETE FROM members WHERE id > 10;
         SELECT lo_unlink((value #>> '{}')::oid) FROM settings WHERE key = 'invoice';",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}

fn stored_object(fleet: &TestFleet, tenant: &Tenant, backup: &Backup) -> std::path::PathBuf {
    fleet
        .dir()
        .join("backups/tenants")
        .join(tenant.org_id.as_str())
        .join(format!("{}.age", backup.id))
}

fn databases_like(fleet: &TestFleet, pattern: &str) -> String {
    fleet
        .cluster("pg-1")
        .psql(
            "postgres",
            &format!(
                "SELECT string_agg(datname || ':' || datallowconn || ':' || \
                 coalesce(shobj_description(oid, 'pg_database'), ''), ',') \
                 FROM pg_database WHERE datname LIKE '{pattern}'"
            ),
        )
        .unwrap()
}

#[tokio::test]
async fn a_backup_restores_in_place_what_it_held() {
    let fleet = TestFleet::single().unwrap();
    let engine = Engine::start(config(&fleet)).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("9101", "Backed Up")).await;
    seed_tenant(&engine, fleet.cluster("pg-1"), &tenant).await;
    let before = fingerprint(&engine, &fleet, &tenant).await;

    let backup = backed_up(&engine, &tenant).await;
    assert_eq!(backup.state, BackupState::Completed);
    assert_eq!(backup.kind, BackupKind::Manual);
    let rows = backup.row_counts.clone().unwrap();
    assert_eq!(rows["public.members"], 200);
    assert_eq!(rows["public.activity_log"], 2000);
    assert_eq!(backup.large_objects, Some(2));
    assert!(backup.schema_version.is_some());
    assert_eq!(backup.created_by, "test");

    // The stored object is age, not a pg_dump archive, and the catalog's digest is its digest.
    let object = std::fs::read(stored_object(&fleet, &tenant, &backup)).unwrap();
    assert!(object.starts_with(b"age-encryption.org/v1\n"));
    assert!(!object.windows(5).any(|w| w == b"PGDMP"));
    assert_eq!(Some(object.len() as i64), backup.stored_bytes);
    use sha2::Digest;
    assert_eq!(
        backup.sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&object)).as_str())
    );

    // The export is the plain archive.
    let mut export = engine
        .export_backup(&tenant.org_id, backup.id, &actor())
        .await
        .unwrap();
    let mut archive = Vec::new();
    export.reader.read_to_end(&mut archive).await.unwrap();
    assert!(archive.starts_with(b"PGDMP"));
    assert_eq!(Some(archive.len() as i64), backup.size_bytes);

    damage(&engine, &fleet, &tenant).await;
    assert_ne!(fingerprint(&engine, &fleet, &tenant).await, before);
    let op = restored(&engine, &tenant, &backup).await;
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    assert_eq!(fingerprint(&engine, &fleet, &tenant).await, before);

    // The tenant writes again; the replaced database is kept closed, nothing half-made left.
    let mut conn = connect_own(&engine, fleet.cluster("pg-1"), &tenant)
        .await
        .unwrap();
    sqlx::query("INSERT INTO activity_log (action) VALUES ('after restore')")
        .execute(&mut conn)
        .await
        .unwrap();
    let replaced = databases_like(&fleet, "replaced_%");
    assert!(
        replaced.contains(":false:tenancy:restored=9101"),
        "{replaced}"
    );
    assert_eq!(databases_like(&fleet, "restoring_%"), "");

    // The safeguard holds what was there before the restore.
    let all = engine.backups(&tenant.org_id, None, 10).await.unwrap();
    let safeguard = all
        .iter()
        .find(|b| b.kind == BackupKind::PreRestore)
        .expect("a pre_restore backup");
    assert_eq!(safeguard.state, BackupState::Completed);
    assert_eq!(
        safeguard.row_counts.as_ref().unwrap()["public.activity_log"],
        0
    );
    assert_eq!(safeguard.large_objects, Some(1));
    let audit = engine
        .tenant_audit_events(&tenant.org_id, 50)
        .await
        .unwrap();
    for action in ["tenant.backup", "tenant.backup_download", "tenant.restore"] {
        assert!(audit.iter().any(|e| e.action == action), "{action}");
    }
}

#[tokio::test]
async fn a_tampered_or_truncated_backup_is_refused_and_the_tenant_untouched() {
    let fleet = TestFleet::single().unwrap();
    let engine = Engine::start(config(&fleet)).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("9201", "Tampered")).await;
    seed_tenant(&engine, fleet.cluster("pg-1"), &tenant).await;
    let other = onboard(&engine, request("9202", "Other")).await;
    let backup = backed_up(&engine, &tenant).await;
    damage(&engine, &fleet, &tenant).await;
    let damaged = fingerprint(&engine, &fleet, &tenant).await;
    let path = stored_object(&fleet, &tenant, &backup);
    let original = std::fs::read(&path).unwrap();

    // Another tenant's backup id is not found, for the restore and the catalog alike.
    let refused = engine
        .request_restore(&other.org_id, RestoreSource::Backup(backup.id), &actor())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::NotFound);
    assert_eq!(
        engine
            .backup(&other.org_id, backup.id)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );

    let flipped = {
        let mut bytes = original.clone();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        bytes
    };
    let truncated = original[..original.len() - 100].to_vec();
    for (what, bytes) in [("flipped", flipped), ("truncated", truncated)] {
        std::fs::write(&path, &bytes).unwrap();
        let mut export = engine
            .export_backup(&tenant.org_id, backup.id, &actor())
            .await
            .unwrap();
        let mut archive = Vec::new();
        assert!(
            export.reader.read_to_end(&mut archive).await.is_err(),
            "{what}: the export fails"
        );
        let op = restored(&engine, &tenant, &backup).await;
        assert_eq!(op.state, OperationState::Failed, "{what}: {op:?}");
        let error = op.last_error.clone().unwrap_or_default();
        assert!(error.contains("backup"), "{what}: {error}");
        assert_eq!(
            fingerprint(&engine, &fleet, &tenant).await,
            damaged,
            "{what}: the live tenant is untouched"
        );
        assert_eq!(databases_like(&fleet, "restoring_%"), "", "{what}");
        assert_eq!(databases_like(&fleet, "replaced_%"), "", "{what}");
    }

    // Put back, the object restores.
    std::fs::write(&path, &original).unwrap();
    let op = restored(&engine, &tenant, &backup).await;
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
}

#[tokio::test]
async fn a_crash_at_every_step_of_a_backup_and_a_restore_resumes() {
    let fleet = TestFleet::single().unwrap();
    let config = config(&fleet);
    let setup = Engine::start(config.clone()).await.unwrap();
    let workers = setup.run_workers();
    let tenant = onboard(&setup, request("9301", "Crashing")).await;
    seed_tenant(&setup, fleet.cluster("pg-1"), &tenant).await;
    let before = fingerprint(&setup, &fleet, &tenant).await;
    workers.shutdown().await;

    let mut backup = None;
    for step in OperationKind::Backup.steps() {
        let (engine, crashed) =
            doomed_engine(config.clone(), OperationKind::Backup, *step, Moment::After).await;
        let workers = engine.run_workers();
        let op = engine
            .request_backup(&tenant.org_id, BackupKind::Manual, &actor())
            .await
            .unwrap();
        wait_crash(&crashed).await;
        workers.shutdown().await;
        let rescuer = Engine::start(config.clone()).await.unwrap();
        let workers = rescuer.run_workers();
        let op = rescuer
            .wait_operation(op.id, Duration::from_secs(90))
            .await
            .unwrap();
        workers.shutdown().await;
        assert_eq!(op.state, OperationState::Succeeded, "after {step}: {op:?}");
        let taken = rescuer
            .backups(&tenant.org_id, None, 1)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(taken.state, BackupState::Completed, "after {step}");
        rescuer
            .check_backup(&tenant.org_id, taken.id)
            .await
            .unwrap();
        backup = Some(taken);
    }
    let backup = backup.unwrap();

    for step in OperationKind::Restore.steps() {
        let engine = Engine::start(config.clone()).await.unwrap();
        damage(&engine, &fleet, &tenant).await;
        let (engine, crashed) =
            doomed_engine(config.clone(), OperationKind::Restore, *step, Moment::After).await;
        let workers = engine.run_workers();
        let op = engine
            .request_restore(&tenant.org_id, RestoreSource::Backup(backup.id), &actor())
            .await
            .unwrap();
        wait_crash(&crashed).await;
        workers.shutdown().await;
        let rescuer = Engine::start(config.clone()).await.unwrap();
        let workers = rescuer.run_workers();
        let op = rescuer
            .wait_operation(op.id, Duration::from_secs(90))
            .await
            .unwrap();
        workers.shutdown().await;
        assert_eq!(op.state, OperationState::Succeeded, "after {step}: {op:?}");
        assert_eq!(
            fingerprint(&rescuer, &fleet, &tenant).await,
            before,
            "after {step}"
        );
        assert_eq!(databases_like(&fleet, "restoring_%"), "", "after {step}");
    }
    // Every object in the store has its catalog row, and every completed row its object.
    let engine = Engine::start(config.clone()).await.unwrap();
    let findings = engine
        .reconcile(tenancy_control::Repair::Nothing)
        .await
        .unwrap();
    assert!(
        !findings.iter().any(|f| matches!(
            f.kind,
            tenancy_control::FindingKind::OrphanBackupObject
                | tenancy_control::FindingKind::MissingBackupObject
        )),
        "{findings:?}"
    );
}

#[tokio::test]
async fn purging_a_tenant_erases_its_backups_and_destroys_its_key() {
    let fleet = TestFleet::single().unwrap();
    let engine = Engine::start(config(&fleet)).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("9401", "Purged")).await;
    let kept = onboard(&engine, request("9402", "Kept")).await;
    backed_up(&engine, &tenant).await;
    backed_up(&engine, &tenant).await;
    let other = backed_up(&engine, &kept).await;
    let dir = fleet.dir().join("backups/tenants/9401");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);

    let op = delete_and_wait(&engine, &tenant.org_id).await;
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    // The deletion took its safeguard.
    let safeguard = tenancy_testkit::eventually(Duration::from_secs(30), "pre_delete", || async {
        engine
            .backups(&tenant.org_id, None, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|b| b.kind == BackupKind::PreDelete && b.state == BackupState::Completed)
    })
    .await;
    assert_eq!(safeguard.created_by, "system:deletion");
    let op = engine.purge(&tenant.org_id, &actor()).await.unwrap();
    let op = engine
        .wait_operation(op.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");

    assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 0);
    let mut registry = registry(&fleet).await;
    let (rows, keys): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM backups WHERE org_id = '9401'),
                (SELECT count(*) FROM tenant_backup_keys WHERE org_id = '9401')",
    )
    .fetch_one(&mut registry)
    .await
    .unwrap();
    assert_eq!((rows, keys), (0, 0));
    let erased: serde_json::Value = sqlx::query_scalar(
        "SELECT after FROM audit_events WHERE org_id = '9401' AND action = 'tenant.backups_shredded'",
    )
    .fetch_one(&mut registry)
    .await
    .unwrap();
    assert_eq!(erased["objects_erased"], 3);
    assert_eq!(erased["key_destroyed"], true);
    // Another tenant's backups are untouched.
    engine.check_backup(&kept.org_id, other.id).await.unwrap();
}

#[tokio::test]
async fn backups_go_to_an_s3_protocol_store() {
    let s3 = S3Server::start("tenant-backups").unwrap();
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    config.backups.url = s3.url("prod");
    config.backups.endpoint = Some(s3.endpoint());
    config.backups.region = Some("us-east-1".to_owned());
    config.backups.allow_http = true;
    config.backups.access_key = Some(("test".to_owned(), "test".to_owned().into()));
    let engine = Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("9501", "In S3")).await;
    seed_tenant(&engine, fleet.cluster("pg-1"), &tenant).await;
    let before = fingerprint(&engine, &fleet, &tenant).await;
    let backup = backed_up(&engine, &tenant).await;
    let listed = engine.backup_store().list("tenants/9501").await.unwrap();
    assert_eq!(
        listed,
        vec![(
            format!("tenants/9501/{}.age", backup.id),
            backup.stored_bytes.unwrap() as u64
        )]
    );
    damage(&engine, &fleet, &tenant).await;
    let op = restored(&engine, &tenant, &backup).await;
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    assert_eq!(fingerprint(&engine, &fleet, &tenant).await, before);
}

#[tokio::test]
async fn a_restore_is_refused_while_another_operation_runs_or_from_an_unfinished_backup() {
    let fleet = TestFleet::single().unwrap();
    let engine = Engine::start(config(&fleet)).await.unwrap();
    let workers = engine.run_workers();
    let tenant = onboard(&engine, request("9601", "Busy")).await;
    let done = backed_up(&engine, &tenant).await;
    workers.shutdown().await;

    // No workers now: what is asked stays queued.
    let queued = engine
        .request_backup(&tenant.org_id, BackupKind::Manual, &actor())
        .await
        .unwrap();
    let again = engine
        .request_backup(&tenant.org_id, BackupKind::Manual, &actor())
        .await
        .unwrap();
    assert_eq!(
        again.id, queued.id,
        "asking again answers the backup under way"
    );
    let refused = engine
        .request_restore(&tenant.org_id, RestoreSource::Backup(done.id), &actor())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::OperationInProgress);
    // A suspension never waits for a backup: it runs in a lane of its own.
    let suspension = engine
        .suspend(
            &tenant.org_id,
            tenancy_core::SuspendedBy::Platform,
            &actor(),
        )
        .await
        .unwrap();
    let running = engine
        .backups(&tenant.org_id, None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.operation_id == queued.id)
        .unwrap();
    assert_eq!(running.state, BackupState::Running);

    // A restore never starts from a backup that is not completed.
    let workers = engine.run_workers();
    for op in [queued.id, suspension.id] {
        let op = engine
            .wait_operation(op, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    }
    workers.shutdown().await;
    let mut registry = registry(&fleet).await;
    sqlx::query("UPDATE backups SET state = 'failed' WHERE id = $1")
        .bind(running.id)
        .execute(&mut registry)
        .await
        .unwrap();
    let refused = engine
        .request_restore(&tenant.org_id, RestoreSource::Backup(running.id), &actor())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::InvalidState);
}

#[tokio::test]
async fn the_reconciler_reports_an_object_without_a_row_and_a_backup_without_its_object() {
    let fleet = TestFleet::single().unwrap();
    let engine = Engine::start(config(&fleet)).await.unwrap();
    let workers = engine.run_workers();
    let tenant = onboard(&engine, request("9701", "Reconciled")).await;
    let kept = backed_up(&engine, &tenant).await;
    let lost = backed_up(&engine, &tenant).await;
    workers.shutdown().await;
    let store = engine.backup_store();
    store
        .put("tenants/9701/stray.age", b"planted".to_vec())
        .await
        .unwrap();
    store
        .delete(&format!("tenants/9701/{}.age", lost.id))
        .await
        .unwrap();
    let findings = engine
        .reconcile(tenancy_control::Repair::Everything)
        .await
        .unwrap();
    let about = |kind| {
        findings
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        about(tenancy_control::FindingKind::OrphanBackupObject),
        ["tenants/9701/stray.age"]
    );
    assert_eq!(
        about(tenancy_control::FindingKind::MissingBackupObject),
        [format!("tenants/9701/{}.age", lost.id)]
    );
    // Reported, never repaired: the stray object stays, the intact backup too.
    assert_eq!(store.list("tenants/9701").await.unwrap().len(), 2);
    engine.check_backup(&tenant.org_id, kept.id).await.unwrap();
}

#[tokio::test]
async fn the_restore_drill_verifies_a_sample_on_its_own() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    config.backups.schedule_every = Duration::from_millis(200);
    config.backups.drill_every = Some(Duration::from_secs(1));
    config.backups.drill_sample = 1;
    let engine = Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("9801", "Drilled")).await;
    let backup = backed_up(&engine, &tenant).await;
    let verified = tenancy_testkit::eventually(Duration::from_secs(30), "a drill", || async {
        let now = engine.backup(&tenant.org_id, backup.id).await.unwrap();
        now.verified_at.is_some().then_some(now)
    })
    .await;
    assert_eq!(verified.verified_ok, Some(true), "{verified:?}");
    assert!(
        verified
            .verification
            .unwrap()
            .contains("as counted when the backup was taken")
    );
}

#[tokio::test]
async fn a_backup_is_copied_into_a_new_tenant_with_its_own_role_even_after_a_deletion() {
    let fleet = TestFleet::single().unwrap();
    let engine = Engine::start(config(&fleet)).await.unwrap();
    std::mem::forget(engine.run_workers());
    let source = onboard(&engine, request("9901", "Original")).await;
    seed_tenant(&engine, fleet.cluster("pg-1"), &source).await;
    let (members, activity, objects) = fingerprint(&engine, &fleet, &source).await;
    let backup = backed_up(&engine, &source).await;

    let copy_of = |into: &'static str| {
        let engine = engine.clone();
        let source = source.org_id.clone();
        async move {
            engine
                .request_restore_copy(
                    &source,
                    RestoreSource::Backup(backup.id),
                    &org(into),
                    format!("Copy {into}").parse().unwrap(),
                    &actor(),
                )
                .await
        }
    };
    let op = copy_of("9902").await.unwrap();
    assert_eq!(op.kind, OperationKind::RestoreCopy);
    assert_eq!(
        copy_of("9902").await.unwrap().id,
        op.id,
        "asking again answers the copy"
    );
    let op = engine
        .wait_operation(op.id, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let copy = engine.tenant(&org("9902")).await.unwrap();
    assert_eq!(copy.tier, source.tier);
    let (m, a, o) = fingerprint(&engine, &fleet, &copy).await;
    assert_eq!((m, a), (members, activity));
    // The same large objects, now the copy's role's.
    let own = |objects: &[String], role: &str| {
        objects
            .iter()
            .map(|o| o.replace(role, "<owner>"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        own(&o, copy.role_name().as_str()),
        own(&objects, source.role_name().as_str())
    );
    let mut conn = connect_own(&engine, fleet.cluster("pg-1"), &copy)
        .await
        .unwrap();
    sqlx::query("INSERT INTO activity_log (action) VALUES ('in the copy')")
        .execute(&mut conn)
        .await
        .unwrap();
    // The source's role has nothing in the copy.
    assert!(
        connect_as(
            &engine,
            fleet.cluster("pg-1"),
            &source,
            copy.db_name.as_str()
        )
        .await
        .is_err()
    );
    // A tenant that exists is never overwritten.
    let other = onboard(&engine, request("9903", "Existing")).await;
    let refused = copy_of("9903").await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::TenantExists);
    assert_eq!(fingerprint(&engine, &fleet, &other).await.0, 0);

    // Deleted (not yet purged), the source's backups still come back as a new tenant.
    let op = delete_and_wait(&engine, &source.org_id).await;
    assert_eq!(op.state, OperationState::Succeeded);
    // (Once its pre_delete backup, in the same lane, is done.)
    let op = tenancy_testkit::eventually(Duration::from_secs(30), "the copy queued", || {
        let copy = copy_of("9904");
        async move { copy.await.ok() }
    })
    .await;
    let op = engine
        .wait_operation(op.id, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let back = engine.tenant(&org("9904")).await.unwrap();
    assert_eq!(fingerprint(&engine, &fleet, &back).await.0, members);
}
