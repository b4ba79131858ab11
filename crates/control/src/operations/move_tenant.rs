//! `move`: the tenant's database goes to another server, and the registry switches it there in
//! one transaction (the change feed tells routers).
//!
//! - **online** (logical replication): the target gets the tenant's role and the schema; a
//!   publication and slot on the source and a subscription on the target copy the rows and then
//!   follow changes; once the target is close behind, the cutover blocks the tenant on the
//!   source, waits until the target has applied everything up to the source's position, copies
//!   sequence values and ends replication.
//! - **offline**: the cutover blocks the tenant and streams `pg_dump` into `pg_restore`.
//!
//! Then both verify the copy (tables, row counts, a checksum of every row), open the target,
//! switch the registry, and keep the source renamed and closed for the retention period.
//! Until the switch the source is the tenant's one copy: a move that gives up (a verification
//! mismatch, requirements gone, attempts spent) is [`abandon`]ed, leaving the tenant on the
//! source, unblocked, with no replication objects and no target database left.

use std::time::{Duration, Instant};

use tenancy_core::{ErrorCode, MoveMode, Step, TenantStatus};

use super::StepContext;
use crate::config::Config;
use crate::error::ControlError;
use crate::pgadmin::{ServerAdmin, TableChecksums, replication_name, retained_name};
use crate::pgtools::PgTools;
use crate::store::{Effect, Finish};
use tenancy_core::TenantMove;

/// What one run of a move read of its move: its record, read once per run. The steps use what
/// does not change (mode, source, target); what they measure they write to the registry.
#[derive(Default)]
pub(crate) struct Run {
    record: Option<TenantMove>,
}

/// The move this operation runs (see [`Run`]).
async fn record(cx: &mut StepContext<'_>) -> Result<TenantMove, ControlError> {
    if let Some(record) = &cx.moving.record {
        return Ok(record.clone());
    }
    let record = cx.store.move_record(cx.op.id).await?;
    cx.moving.record = Some(record.clone());
    Ok(record)
}

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    let m = &record(cx).await?;
    let online = m.mode == MoveMode::Online;
    let db = &cx.tenant.db_name.clone();
    let role = cx.tenant.role_name();
    let org_id = &cx.tenant.org_id.clone();
    let name = replication_name(cx.op.id);
    if BEFORE_SWITCH.contains(&step) {
        check_not_cancelled(cx).await?;
    }
    match step {
        Step::CheckMove => {
            let (source, target) = admins(cx, m).await?;
            let possible = requirements(cx.config, &source, &target, db).await?;
            if online && let Err(why) = possible {
                return Err(ControlError::move_unsupported(format!(
                    "an online move is no longer possible: {why}"
                )));
            }
            Ok(())
        }
        Step::TargetRole => {
            let password = cx.password().await?;
            cx.admin_of(&m.target_server_id)
                .await?
                .ensure_role(&role, &password, cx.limits()?, org_id, false)
                .await
        }
        Step::TargetDatabase if online => {
            let (source, target) = admins(cx, m).await?;
            copy_to_target(cx, &source, &target, true).await.map(drop)
        }
        Step::Subscribe if online => {
            let (source, target) = admins(cx, m).await?;
            source.publish(db, &name).await?;
            target.subscribe(db, &name, &source).await
        }
        Step::CatchUp if online => catch_up(cx, m, &name).await,
        Step::TargetDatabase | Step::Subscribe | Step::CatchUp => Ok(()),
        Step::Cutover => cutover(cx, m, &name).await,
        Step::Verify => {
            let (source, target) = admins(cx, m).await?;
            let started = Instant::now();
            let (before, after, objects_before, objects_after) = tokio::try_join!(
                source.table_checksums(db),
                target.table_checksums(db),
                source.large_object_digest(db, &role),
                target.large_object_digest(db, &role),
            )?;
            let copies = Copies {
                tables: (&before, &after),
                large_objects: (&objects_before, &objects_after),
            };
            let summary = compare(copies, started.elapsed())
                .map_err(|why| ControlError::conflict(ErrorCode::VerificationFailed, why))?;
            cx.store.move_verified(cx.op.id, &summary).await
        }
        Step::Switch => {
            let target = cx.admin_of(&m.target_server_id).await?;
            let active = cx.tenant.status == TenantStatus::Active;
            let password = cx.password().await?;
            target
                .ensure_role(&role, &password, cx.limits()?, org_id, active)
                .await?;
            // The copy carries the privileges the source granted the role inside.
            target.open_to(db, &role, org_id).await?;
            target.end_other_sessions(db, &role).await?;
            if !active {
                target.block(db, &role).await?;
            }
            // The flag as it is now, not as this run read it: the sampler may have changed it
            // during the move (on the source); read again once the switch committed, so a
            // change in between is carried too.
            let read_only = current_read_only(cx).await?;
            target.set_read_only(db, &role, read_only).await?;
            let switched = Effect::Switched {
                source: m.source_server_id.clone(),
                target: m.target_server_id.clone(),
            };
            cx.store.apply(cx.op, cx.worker, switched).await?;
            let now = current_read_only(cx).await?;
            if now != read_only {
                target.set_read_only(db, &role, now).await?;
            }
            target
                .set_temp_tables(db, &role, cx.temp_tables(active, now)?)
                .await?;
            metrics::counter!("tenancy_moves_total", "mode" => m.mode.as_str(), "outcome" => "switched").increment(1);
            let switched = cx.store.move_record(cx.op.id).await?;
            if let Some(ms) = switched.downtime_ms {
                metrics::histogram!("tenancy_move_downtime_seconds", "mode" => m.mode.as_str())
                    .record(ms as f64 / 1000.0);
            }
            cx.tenant.server_id = Some(m.target_server_id.clone());
            Ok(())
        }
        Step::RetireSource => {
            let retained = retained_name(cx.op.id);
            cx.admin_of(&m.source_server_id)
                .await?
                .retire_moved(db, &role, &retained, org_id)
                .await?;
            cx.store
                .move_retained(cx.op.id, &retained, cx.config.engine.retention)
                .await
        }
        Step::Finish => cx.finish(Finish::Unchanged).await,
        other => Err(cx.unexpected(other)),
    }
}

/// The tenant's read-only flag as the registry holds it now.
async fn current_read_only(cx: &StepContext<'_>) -> Result<bool, ControlError> {
    let tenant = cx.store.tenant(&cx.tenant.org_id).await?;
    Ok(tenant.is_some_and(|t| t.read_only))
}

/// The steps a cancel stops (the switch checks again in its own transaction).
const BEFORE_SWITCH: &[Step] = &[
    Step::CheckMove,
    Step::TargetRole,
    Step::TargetDatabase,
    Step::Subscribe,
    Step::CatchUp,
    Step::Cutover,
    Step::Verify,
    Step::Switch,
];

/// Fails the step (`cancelled`, not retried: the move is abandoned) once a cancel was asked.
async fn check_not_cancelled(cx: &StepContext<'_>) -> Result<(), ControlError> {
    if cx.store.move_cancel_requested(cx.op.id).await? {
        return Err(ControlError::conflict(
            ErrorCode::Cancelled,
            "the move was cancelled before its switch; the tenant stays on its source",
        ));
    }
    Ok(())
}

/// The admin connections of the move's source and target (fenced by the lease).
async fn admins(
    cx: &StepContext<'_>,
    m: &TenantMove,
) -> Result<(ServerAdmin, ServerAdmin), ControlError> {
    Ok((
        cx.admin_of(&m.source_server_id).await?,
        cx.admin_of(&m.target_server_id).await?,
    ))
}

/// Online: waits until every table's initial copy is done and the target is within
/// `[moves] cutover_lag` of the source.
async fn catch_up(cx: &StepContext<'_>, m: &TenantMove, name: &str) -> Result<(), ControlError> {
    let (source, target) = admins(cx, m).await?;
    let moves = &cx.config.moves;
    let started = Instant::now();
    let mut round = 0u64;
    loop {
        round += 1;
        // About once a second: a cancel stops the wait (which may last an hour).
        if round.is_multiple_of(10) {
            check_not_cancelled(cx).await?;
        }
        let copying = target
            .subscription_state(&cx.tenant.db_name, name)
            .await?
            .ok_or_else(|| ControlError::Corrupt(format!("subscription {name} is gone")))?;
        let (_, lag) = source.replication_lag(name).await?;
        if copying == 0 && lag.is_some_and(|lag| lag <= moves.cutover_lag.as_u64() as i64) {
            return Ok(());
        }
        if started.elapsed() > moves.catch_up_timeout {
            return Err(ControlError::Timeout(moves.catch_up_timeout));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Blocks the tenant on the source (its downtime starts), then either lets the target apply
/// the rest and copies sequences (online) or copies the database (offline).
async fn cutover(cx: &StepContext<'_>, m: &TenantMove, name: &str) -> Result<(), ControlError> {
    let db = &cx.tenant.db_name;
    let (source, target) = admins(cx, m).await?;
    cx.store.move_blocked(cx.op.id).await?;
    source.block(db, &cx.tenant.role_name()).await?;
    match m.mode {
        MoveMode::Online => {
            let mut lag = None;
            // Gone only if an earlier run got past the wait (replication ends last).
            if target.subscription_state(db, name).await?.is_some() {
                // Once more if a session shows up after the wait (one that logged in just
                // before the block can): it may have written after the position waited for.
                loop {
                    let (lsn, behind) = source.replication_lag(name).await?;
                    lag = lag.or(behind);
                    source
                        .wait_applied(name, &lsn, cx.config.moves.cutover_timeout)
                        .await?;
                    if source.end_sessions(db, &cx.tenant.role_name()).await? == 0 {
                        break;
                    }
                }
            }
            target
                .set_sequences(db, &source.sequences(db).await?)
                .await?;
            source
                .copy_large_objects(db, &cx.tenant.role_name(), &target)
                .await?;
            source.end_replication(db, name, Some(&target)).await?;
            let (size, _) = source.usage(db).await?;
            metrics::counter!("tenancy_move_bytes_total", "mode" => "online")
                .increment(u64::try_from(size).unwrap_or(0));
            if let Some(lag) = lag {
                metrics::histogram!("tenancy_move_cutover_lag_bytes").record(lag as f64);
            }
            cx.store.move_copied(cx.op.id, size, lag).await
        }
        MoveMode::Offline => {
            let dumped = copy_to_target(cx, &source, &target, false).await?;
            let bytes = dumped
                + source
                    .copy_large_objects(db, &cx.tenant.role_name(), &target)
                    .await?;
            metrics::counter!("tenancy_move_bytes_total", "mode" => "offline").increment(bytes);
            cx.store
                .move_copied(cx.op.id, i64::try_from(bytes).unwrap_or(i64::MAX), None)
                .await
        }
    }
}

/// What a verification compares: per-table checksums and the large objects' digest (count and
/// digest), each of the source and the target.
struct Copies<'a> {
    tables: (&'a TableChecksums, &'a TableChecksums),
    large_objects: (&'a (i64, String), &'a (i64, String)),
}

/// What the verification found, or why the copy differs.
fn compare(copies: Copies<'_>, took: Duration) -> Result<String, String> {
    let (source, target) = copies.tables;
    let mut problems = Vec::new();
    for (table, (rows, sum)) in source {
        match target.get(table) {
            None => problems.push(format!("{table} is missing")),
            Some((r, _)) if r != rows => problems.push(format!("{table} has {r} rows, not {rows}")),
            Some((_, s)) if s != sum => problems.push(format!("{table}'s rows differ")),
            Some(_) => {}
        }
    }
    for table in target.keys().filter(|t| !source.contains_key(*t)) {
        problems.push(format!("{table} is not on the source"));
    }
    let ((objects, digest), (copied, copied_digest)) = copies.large_objects;
    if copied != objects {
        problems.push(format!(
            "{copied} large objects on the target, not {objects}"
        ));
    } else if copied_digest != digest {
        problems.push("large objects differ (content, owner or grants)".to_owned());
    }
    if !problems.is_empty() {
        return Err(format!(
            "the copy differs from the source: {}; the tenant stays on the source",
            problems.join("; ")
        ));
    }
    let rows: i64 = source.values().map(|(r, _)| r).sum();
    Ok(format!(
        "{} tables, {rows} rows, {objects} large objects: identical (every row and object \
         checksummed, in {} ms)",
        source.len(),
        took.as_millis()
    ))
}

/// Undoes a move that gives up before its switch: replication ended, the target's database
/// and role dropped, the tenant unblocked on the source (unless suspended). After the switch
/// there is nothing to undo: the tenant is on the target.
pub(super) async fn abandon(
    cx: &mut StepContext<'_>,
    why: &ControlError,
) -> Result<(), ControlError> {
    let m = &record(cx).await?;
    if cx.tenant.server_id.as_ref() == Some(&m.target_server_id) {
        return Ok(());
    }
    let (source, target) = admins(cx, m).await?;
    let db = &cx.tenant.db_name;
    let role = cx.tenant.role_name();
    source
        .end_replication(db, &replication_name(cx.op.id), Some(&target))
        .await?;
    target.drop_move_target(db, &cx.tenant.org_id).await?;
    target.drop_tenant_role(&role, &cx.tenant.org_id).await?;
    // The status of now: a suspension that preempted the move leaves the source blocked.
    let now = cx.store.tenant(&cx.tenant.org_id).await?;
    if let Some(now) = now.filter(|t| t.status == TenantStatus::Active) {
        source.unblock(db, &role).await?;
        let allowed = cx.temp_tables(true, now.read_only)?;
        source.set_temp_tables(db, &role, allowed).await?;
    }
    metrics::counter!("tenancy_moves_total", "mode" => m.mode.as_str(), "outcome" => "aborted")
        .increment(1);
    cx.store.move_aborted(cx.op.id, &why.to_string()).await
}

/// The client tools, as configured.
/// The tenant's database made afresh on the target and filled from the source's by
/// `pg_dump | pg_restore`: its schema alone (online: replication brings the rows) or all of it
/// (offline). Returns the bytes streamed.
async fn copy_to_target(
    cx: &StepContext<'_>,
    source: &ServerAdmin,
    target: &ServerAdmin,
    schema_only: bool,
) -> Result<u64, ControlError> {
    let db = &cx.tenant.db_name;
    target
        .create_move_target(db, &cx.tenant.org_id, source)
        .await?;
    tools(cx.config)
        .await?
        .copy(
            source.config(),
            db.as_str(),
            target.config(),
            db.as_str(),
            schema_only,
        )
        .await
}

async fn tools(config: &Config) -> Result<PgTools, ControlError> {
    PgTools::find(config.moves.pg_bin_dir.as_deref()).await
}

/// Checks what every move needs (client tools that can dump the source, a target at least as
/// new); returns whether an online move is possible, or why not.
pub(crate) async fn requirements(
    config: &Config,
    source: &ServerAdmin,
    target: &ServerAdmin,
    db: &tenancy_core::DbName,
) -> Result<Result<(), String>, ControlError> {
    let tools = tools(config).await?;
    let (from, to) = tokio::try_join!(source.server_facts(), target.server_facts())?;
    if tools.major < from.major() {
        return Err(ControlError::move_unsupported(format!(
            "pg_dump {} cannot dump server {} (PostgreSQL {}); install a newer client or set \
             [moves] pg_bin_dir",
            tools.major,
            source.id(),
            from.major()
        )));
    }
    if to.major() < from.major() {
        return Err(ControlError::move_unsupported(format!(
            "server {} runs PostgreSQL {}, older than server {}'s {}: a dump cannot be restored \
             into an older server",
            target.id(),
            to.major(),
            source.id(),
            from.major()
        )));
    }
    if from.wal_level != "logical" {
        return Ok(Err(format!(
            "server {} has wal_level = {} (online moves need logical)",
            source.id(),
            from.wal_level
        )));
    }
    if !from.replication || !to.superuser {
        return Ok(Err(format!(
            "online moves need the admin of server {} to have REPLICATION and that of server {} \
             to be a superuser (to subscribe)",
            source.id(),
            target.id()
        )));
    }
    let unkeyed = source.tables_without_identity(db).await?;
    if !unkeyed.is_empty() {
        return Ok(Err(format!(
            "tables without a primary key or replica identity cannot be replicated: {}",
            unkeyed.join(", ")
        )));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(tables: &[(&str, i64, &str)]) -> TableChecksums {
        tables
            .iter()
            .map(|(t, r, s)| ((*t).to_owned(), (*r, (*s).to_owned())))
            .collect()
    }

    static NO_OBJECTS: (i64, String) = (0, String::new());

    fn tables<'a>(source: &'a TableChecksums, target: &'a TableChecksums) -> Copies<'a> {
        Copies {
            tables: (source, target),
            large_objects: (&NO_OBJECTS, &NO_OBJECTS),
        }
    }

    #[test]
    fn a_copy_must_match_table_by_table() {
        let source = sums(&[("public.a", 2, "10"), ("public.b", 0, "")]);
        assert!(
            compare(tables(&source, &source), Duration::ZERO)
                .unwrap()
                .starts_with("2 tables, 2 rows, 0 large objects")
        );
        for (target, problem) in [
            (
                sums(&[("public.a", 1, "10"), ("public.b", 0, "")]),
                "has 1 rows, not 2",
            ),
            (
                sums(&[("public.a", 2, "11"), ("public.b", 0, "")]),
                "rows differ",
            ),
            (sums(&[("public.a", 2, "10")]), "public.b is missing"),
            (
                sums(&[
                    ("public.a", 2, "10"),
                    ("public.b", 0, ""),
                    ("public.c", 0, ""),
                ]),
                "not on the source",
            ),
        ] {
            let refused = compare(tables(&source, &target), Duration::ZERO).unwrap_err();
            assert!(refused.contains(problem), "{refused}");
        }
    }

    #[test]
    fn a_copy_must_carry_every_large_object() {
        let source = sums(&[("public.a", 1, "10")]);
        let three = (3, "42".to_owned());
        for (copied, problem) in [
            ((0, "0".to_owned()), "0 large objects on the target, not 3"),
            ((3, "41".to_owned()), "large objects differ"),
        ] {
            let copies = Copies {
                tables: (&source, &source),
                large_objects: (&three, &copied),
            };
            let refused = compare(copies, Duration::ZERO).unwrap_err();
            assert!(refused.contains(problem), "{refused}");
        }
    }
}
