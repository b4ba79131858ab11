//! `restore`: the tenant's database is brought back, in place, as it was at one of its backups.
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

use std::time::Instant;

use tenancy_core::{BackupKind, ErrorCode, Step, TenantStatus};

use super::StepContext;
use super::backup;
use crate::backups::{Hashing, crypt};
use crate::error::ControlError;
use crate::pgadmin::{Contents, replaced_name, restoring_name};
use crate::store::{Finish, StoredBackup};

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    let org_id = &cx.tenant.org_id.clone();
    let db = &cx.tenant.db_name.clone();
    let restoring = restoring_name(cx.op.id);
    match step {
        Step::Safeguard => backup::take(cx, BackupKind::PreRestore).await,
        Step::RestoreDatabase => {
            let source = source(cx).await?;
            let admin = cx.admin().await?;
            let _slot = backup::slot(cx, admin.id()).await?;
            let tools = backup::tools(cx).await?;
            let identity = backup::identity(cx).await?;
            admin.create_restore_target(&restoring, db, org_id).await?;
            let started = Instant::now();
            let what = format!("backup {}", source.backup.id);
            let mut read = Hashing::new(cx.backups.reader(&source.object_key).await?);
            let restored = async {
                let mut plain = crypt::decrypting(&identity, &mut read, &what).await?;
                tools
                    .restore_from(admin.config(), restoring.as_str(), &mut plain)
                    .await
            }
            .await;
            let (bytes, sha256) = read.finish();
            let unchanged = Some(sha256.as_str()) == source.backup.sha256.as_deref()
                && Some(bytes as i64) == source.backup.stored_bytes;
            match restored {
                Ok(_) if unchanged => {
                    metrics::histogram!("tenancy_restore_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    Ok(())
                }
                Ok(_) => {
                    admin.drop_restore_target(&restoring, org_id).await?;
                    Err(ControlError::BackupUnreadable(format!(
                        "{what}: the store returned other bytes than were stored"
                    )))
                }
                Err(e) => {
                    admin.drop_restore_target(&restoring, org_id).await?;
                    Err(e)
                }
            }
        }
        Step::Verify => {
            let source = source(cx).await?;
            let admin = cx.admin().await?;
            let found = admin.contents(&restoring).await?;
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
            let admin = cx.admin().await?;
            let role = cx.tenant.role_name();
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
            admin
                .set_temp_tables(db, &role, cx.temp_tables(active, read_only)?)
                .await
        }
        Step::RetireRestored => {
            let replaced = replaced_name(cx.op.id);
            cx.store
                .restore_swapped(
                    cx.op.id,
                    org_id,
                    replaced.as_str(),
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

/// Undoes a restore that gives up before its swap: its fresh database is dropped, the tenant
/// unblocked if active (a swap that failed half way blocked it). After the swap there is
/// nothing to undo.
pub(super) async fn abandon(
    cx: &mut StepContext<'_>,
    why: &ControlError,
) -> Result<(), ControlError> {
    let Some(admin) = cx.placed_admin().await? else {
        return Ok(());
    };
    let org_id = &cx.tenant.org_id;
    let restoring = restoring_name(cx.op.id);
    admin.drop_restore_target(&restoring, org_id).await?;
    let db = &cx.tenant.db_name;
    let role = cx.tenant.role_name();
    if let Some(now) = cx.store.tenant(org_id).await?
        && now.status == TenantStatus::Active
        && admin.database_exists(db).await?
    {
        admin.unblock(db, &role).await?;
        let allowed = cx.temp_tables(true, now.read_only)?;
        admin.set_temp_tables(db, &role, allowed).await?;
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
