//! `restore`: the tenant's database is brought back, in place, as it was at one of its backups;
//! `restore_copy`: one of its backups is copied into a new tenant (waiting until that tenant is
//! provisioned, restored as the admin and granted to the new tenant's role, then swapped in as
//! below; no safeguard, the new tenant holds nothing yet).
//!
//! A `pre_restore` backup of the live database is taken first. The backup is then restored into
//! a fresh database beside the live one (decrypted as it streams; one that does not
//! authenticate is refused and the fresh database dropped), verified against the row counts the
//! catalog recorded when it was dumped, and swapped in: the tenant is blocked only for the swap
//! (two renames in one transaction), the replaced database kept closed for the retention
//! period. The role's connect, read-only and temporary-table privileges are applied to the new
//! database, and the change feed tells routers. Until the swap the live database is untouched:
//! a restore that gives up ([`abandon`]) drops its fresh database and leaves the tenant as it
//! was.

use std::time::{Duration, Instant};

use tenancy_core::{BackupKind, BackupState, ErrorCode, OperationKind, Step, Tenant, TenantStatus};

use super::StepContext;
use super::backup;
use crate::archive::scratch::{Plan, Scratch};
use crate::backups::{Hashing, crypt};
use crate::error::ControlError;
use crate::pgadmin::{Contents, ServerAdmin, replaced_name, restoring_name};
use crate::store::{Finish, StoredBackup};

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    let restoring = restoring_name(cx.op.id);
    match step {
        Step::Recover => recover(cx).await,
        Step::Safeguard => backup::take(cx, BackupKind::PreRestore).await,
        Step::TargetTenant => {
            let target = target(cx).await?;
            match target.status {
                TenantStatus::Active | TenantStatus::Suspended => Ok(()),
                TenantStatus::Provisioning => Err(ControlError::TargetProvisioning(target.org_id)),
                other => Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!(
                        "tenant {} is {other}: a backup is copied only into an active or \
                         suspended tenant",
                        target.org_id
                    ),
                )),
            }
        }
        Step::RestoreDatabase => {
            let source = source(cx).await?;
            let target = target(cx).await?;
            let admin = admin_of(cx, &target).await?;
            let _slot = backup::slot(cx, admin.id()).await?;
            let tools = backup::tools(cx).await?;
            let identity = backup::identity(cx).await?;
            let copy = cx.op.kind == OperationKind::RestoreCopy;
            admin
                .create_restore_target(&restoring, &target.db_name, &target.org_id)
                .await?;
            let started = Instant::now();
            let what = format!("backup {}", source.backup.id);
            let mut read = Hashing::new(cx.backups.reader(&source.object_key).await?);
            let restored = async {
                let mut plain = crypt::decrypting(&identity, &mut read, &what).await?;
                tools
                    .restore_from(admin.config(), restoring.as_str(), &mut plain, copy)
                    .await?;
                if copy {
                    // The archive's owners and grants name the source's role: the copy's
                    // objects are the admin's, its role gets what the template grants.
                    let role = target.role_name();
                    admin.grant_app_privileges(&restoring, &role).await?;
                    admin.own_large_objects(&restoring, &role).await?;
                }
                Ok::<_, ControlError>(())
            }
            .await;
            let unchanged = read.is_stored(&source.backup);
            match restored {
                Ok(()) if unchanged => {
                    metrics::histogram!("tenancy_restore_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    Ok(())
                }
                Ok(()) => {
                    admin
                        .drop_restore_target(&restoring, &target.org_id)
                        .await?;
                    Err(ControlError::BackupUnreadable(format!(
                        "{what}: the store returned other bytes than were stored"
                    )))
                }
                Err(e) => {
                    admin
                        .drop_restore_target(&restoring, &target.org_id)
                        .await?;
                    Err(e)
                }
            }
        }
        Step::Verify => {
            let source = source(cx).await?;
            let target = target(cx).await?;
            let found = admin_of(cx, &target).await?.contents(&restoring).await?;
            let expected = Contents {
                rows: source.backup.row_counts.clone().unwrap_or_default(),
                large_objects: source.backup.large_objects.unwrap_or(0),
            };
            let summary = compare_contents(&expected, &found).map_err(|why| {
                ControlError::conflict(
                    ErrorCode::VerificationFailed,
                    format!("{why}; the live database is untouched"),
                )
            })?;
            cx.store.restore_verified(cx.op.id, &summary).await
        }
        Step::Swap => {
            let target = target(cx).await?;
            let admin = admin_of(cx, &target).await?;
            let (db, org_id, role) = (&target.db_name, &target.org_id, target.role_name());
            let replaced = replaced_name(cx.op.id);
            admin.block(db, &role).await?;
            admin
                .swap_restored(db, &restoring, &replaced, org_id, &role)
                .await?;
            admin.open_to(db, &role, org_id).await?;
            let now = cx.store.tenant(org_id).await?;
            let (active, read_only) = now.as_ref().map_or((false, false), |t| {
                (t.status == TenantStatus::Active, t.read_only)
            });
            admin.set_read_only(db, &role, read_only).await?;
            if active {
                admin.unblock(db, &role).await?;
            } else {
                admin.block(db, &role).await?;
            }
            let allowed = cx
                .config
                .tier_limits(&target.tier)?
                .temp_tables_for(active, read_only);
            admin.set_temp_tables(db, &role, allowed).await
        }
        Step::RetireRestored => {
            let target = target(cx).await?;
            let server = placed(&target)?;
            let replaced = replaced_name(cx.op.id);
            cx.store
                .restore_swapped(
                    cx.op.id,
                    &target.org_id,
                    (server, replaced.as_str()),
                    cx.config.engine.retention,
                )
                .await?;
            metrics::counter!("tenancy_restores_total", "outcome" => "swapped").increment(1);
            Ok(())
        }
        Step::Finish => cx.finish(Finish::Unchanged).await,
        other => Err(cx.unexpected(other)),
    }
}

/// How long a restore to a recent moment waits for the archive to reach past it.
const ARCHIVE_WAIT: Duration = Duration::from_secs(120);

/// A point-in-time restore's recovery (nothing for a restore from a backup): the tenant's
/// server's archive is brought past the moment (a mark, then a WAL switch, when the moment is
/// recent), a scratch instance recovered to the moment, and the tenant's database dumped from
/// it into a `point_in_time` backup, which the steps after restore as any other.
async fn recover(cx: &mut StepContext<'_>) -> Result<(), ControlError> {
    let record = cx.store.restore_record(cx.op.id).await?;
    let Some(moment) = record.point_in_time else {
        return Ok(());
    };
    if record.backup_id.is_some() {
        return Ok(());
    }
    // Recovered and dumped already (a crash before it was recorded): no second recovery.
    if let Some(done) = cx
        .store
        .operation_backups(cx.op.id)
        .await?
        .into_iter()
        .find(|b| {
            b.backup.kind == BackupKind::PointInTime && b.backup.state == BackupState::Completed
        })
        && let Some(server) = &done.backup.server_id
    {
        let from = cx
            .store
            .server_at(&cx.tenant, moment)
            .await?
            .unwrap_or(server.clone());
        return cx
            .store
            .restore_recovered(cx.op.id, done.backup.id, &from)
            .await;
    }
    placed(&cx.tenant)?;
    // The server its database was on then (a moved tenant's earlier server).
    let server = cx
        .store
        .server_at(&cx.tenant, moment)
        .await?
        .ok_or_else(|| {
            ControlError::conflict(
                ErrorCode::OutsideRestoreWindow,
                format!("tenant {} did not exist at {moment}", cx.tenant.org_id),
            )
        })?;
    if cx.config.server_archive(&server).is_none() {
        return Err(ControlError::conflict(
            ErrorCode::OutsideRestoreWindow,
            format!(
                "tenant {} was on server {server} at {moment}, whose WAL is not archived",
                cx.tenant.org_id
            ),
        ));
    }
    let admin = cx.admin_of(&server).await?;
    let through = archived_past(cx, &admin, moment).await?;
    let facts = admin.wal_facts().await?;
    let state = cx.store.archive_state(&server).await?;
    let outside = |why: String| ControlError::conflict(ErrorCode::OutsideRestoreWindow, why);
    let timeline = state
        .timeline
        .ok_or_else(|| outside(format!("server {server}'s WAL archive is empty")))?;
    let base = cx
        .store
        .base_backup_before(&server, timeline, state.unbroken_from.unwrap_or(0), moment)
        .await?
        .ok_or_else(|| {
            outside(format!(
                "no base backup of server {server} ended before {moment} with WAL after it"
            ))
        })?;
    let others = cx
        .store
        .other_tenant_databases(&server, &cx.tenant.org_id)
        .await?;
    let plan = Plan::new(base, facts.segments, through, &others)?;
    let (sealed, _) = cx.store.archive_key(&server).await?.ok_or_else(|| {
        ControlError::BackupUnreadable(format!("server {server} has no WAL archive key"))
    })?;
    let identity = crypt::open_server_key(cx.keyring, &server, &sealed)?;
    let scratch = Scratch::recover(
        cx.config,
        cx.store,
        cx.backups,
        &identity,
        admin.config(),
        &plan,
        moment,
        cx.op.id,
        cx.op.attempts,
    )
    .await?;
    let dumped = backup::take_from(cx, BackupKind::PointInTime, &scratch.admin).await;
    scratch.remove(cx.config).await;
    let stored = dumped?;
    cx.store
        .restore_recovered(cx.op.id, stored.backup.id, &server)
        .await?;
    metrics::counter!("tenancy_point_in_time_recoveries_total").increment(1);
    Ok(())
}

/// Where the WAL a recovery to `moment` needs ends, once it is archived: the first mark after
/// the moment. A recent moment has none yet: one is made and the segment switched, and the
/// keeper stores it.
async fn archived_past(
    cx: &StepContext<'_>,
    admin: &ServerAdmin,
    moment: chrono::DateTime<chrono::Utc>,
) -> Result<crate::archive::wal::Lsn, ControlError> {
    let server = admin.id();
    let started = Instant::now();
    let mut switched: Option<Instant> = None;
    loop {
        let mark = cx.store.mark_after(server, moment).await?;
        let archived_to = cx.store.archive_state(server).await?.archived_to;
        if let (Some(mark), Some(to)) = (mark, archived_to)
            && mark <= to
        {
            return Ok(mark);
        }
        if started.elapsed() > ARCHIVE_WAIT {
            return Err(ControlError::BackupStore(format!(
                "server {server}'s WAL archive did not reach {moment} in {}s; is its keeper \
                 running? (tenantctl servers wal-status)",
                ARCHIVE_WAIT.as_secs()
            )));
        }
        if switched.is_none_or(|at| at.elapsed() > Duration::from_secs(10))
            && chrono::Utc::now() > moment
        {
            if mark.is_none() {
                let (at, lsn) = admin.wal_mark().await?;
                cx.store.insert_mark(server, at, lsn).await?;
            }
            admin.switch_wal().await?;
            switched = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The tenant the backup goes into: the operation's own (in place), or the new tenant of a copy
/// (as the registry has it now).
async fn target(cx: &StepContext<'_>) -> Result<Tenant, ControlError> {
    if cx.op.kind != OperationKind::RestoreCopy {
        return Ok(cx.tenant.clone());
    }
    let into = cx
        .store
        .restore_record(cx.op.id)
        .await?
        .into_org_id
        .ok_or_else(|| ControlError::Corrupt(format!("copy {} names no tenant", cx.op.id)))?;
    cx.store
        .tenant(&into)
        .await?
        .ok_or(ControlError::TenantNotFound(into))
}

fn placed(tenant: &Tenant) -> Result<&tenancy_core::ServerId, ControlError> {
    tenant.server_id.as_ref().ok_or_else(|| {
        ControlError::conflict(
            ErrorCode::NotPlaced,
            format!("tenant {} has no database yet", tenant.org_id),
        )
    })
}

/// The admin connections of the target's server (fenced by the lease).
async fn admin_of(cx: &StepContext<'_>, target: &Tenant) -> Result<ServerAdmin, ControlError> {
    cx.admin_of(placed(target)?).await
}

/// The backup this restore restores (still this tenant's and completed).
async fn source(cx: &StepContext<'_>) -> Result<StoredBackup, ControlError> {
    let record = cx.store.restore_record(cx.op.id).await?;
    let gone = || ControlError::NotFound {
        what: "the backup this restore restores (it was deleted)".to_owned(),
    };
    let id = record.backup_id.ok_or_else(gone)?;
    cx.store
        .backup(&cx.tenant.org_id, id)
        .await?
        .ok_or_else(gone)
}

/// What the restored database holds beside what the catalog recorded when it was dumped.
pub(crate) fn compare_contents(expected: &Contents, found: &Contents) -> Result<String, String> {
    let mut problems = Vec::new();
    for (table, rows) in &expected.rows {
        match found.rows.get(table) {
            None => problems.push(format!("{table} is missing")),
            Some(n) if n != rows => problems.push(format!("{table} has {n} rows, not {rows}")),
            Some(_) => {}
        }
    }
    for table in found
        .rows
        .keys()
        .filter(|t| !expected.rows.contains_key(*t))
    {
        problems.push(format!("{table} is not in the backup"));
    }
    if found.large_objects != expected.large_objects {
        problems.push(format!(
            "{} large objects, not {}",
            found.large_objects, expected.large_objects
        ));
    }
    if !problems.is_empty() {
        return Err(format!(
            "the restored database differs from the backup: {}",
            problems.join("; ")
        ));
    }
    Ok(format!(
        "{} tables, {} rows, {} large objects: as counted when the backup was taken",
        expected.rows.len(),
        expected.rows.values().sum::<i64>(),
        expected.large_objects
    ))
}

/// Undoes a restore that gives up before its swap: its fresh database is dropped, the target
/// unblocked if active (a swap that failed half way blocked it). After the swap there is
/// nothing to undo.
pub(super) async fn abandon(
    cx: &mut StepContext<'_>,
    why: &ControlError,
) -> Result<(), ControlError> {
    crate::archive::scratch::remove_dir(
        cx.config,
        &Scratch::dir_of(cx.config, cx.op.id, cx.op.attempts),
    )
    .await;
    let target = match target(cx).await {
        Ok(target) => target,
        Err(ControlError::TenantNotFound(_)) => return backup::abandon(cx, why).await,
        Err(e) => return Err(e),
    };
    if target.server_id.is_some() {
        let admin = admin_of(cx, &target).await?;
        admin
            .drop_restore_target(&restoring_name(cx.op.id), &target.org_id)
            .await?;
        let (db, role) = (&target.db_name, target.role_name());
        if let Some(now) = cx.store.tenant(&target.org_id).await?
            && now.status == TenantStatus::Active
            && admin.database_exists(db).await?
        {
            admin.unblock(db, &role).await?;
            let allowed = cx
                .config
                .tier_limits(&now.tier)?
                .temp_tables_for(true, now.read_only);
            admin.set_temp_tables(db, &role, allowed).await?;
        }
    }
    backup::abandon(cx, why).await?;
    metrics::counter!("tenancy_restores_total", "outcome" => "abandoned").increment(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(rows: &[(&str, i64)], large_objects: i64) -> Contents {
        Contents {
            rows: rows.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect(),
            large_objects,
        }
    }

    #[test]
    fn a_restore_must_hold_what_was_counted() {
        let expected = contents(&[("public.a", 2), ("public.b", 0)], 1);
        assert!(
            compare_contents(&expected, &expected)
                .unwrap()
                .starts_with("2 tables, 2 rows, 1 large objects")
        );
        for (found, problem) in [
            (
                contents(&[("public.a", 1), ("public.b", 0)], 1),
                "has 1 rows, not 2",
            ),
            (contents(&[("public.a", 2)], 1), "public.b is missing"),
            (
                contents(&[("public.a", 2), ("public.b", 0), ("public.c", 0)], 1),
                "not in the backup",
            ),
            (
                contents(&[("public.a", 2), ("public.b", 0)], 0),
                "0 large objects, not 1",
            ),
        ] {
            let refused = compare_contents(&expected, &found).unwrap_err();
            assert!(refused.contains(problem), "{refused}");
        }
    }
}
