//! The warm pool: spares cloned ahead of demand, claimed by provisioning (a rename), never by
//! two tenants, never at an old template version, never connectable.

use std::time::Duration;

use sqlx::Connection;
use tenancy_control::{Config, Engine, Onboarded};
use tenancy_core::{OperationState, ProvisionPath, TenantStatus};
use tenancy_testkit::{TestFleet, eventually};

use crate::helpers::*;

fn pooled(fleet: &TestFleet, size: u32) -> Config {
    let mut config = config(fleet);
    config.warm_pool.size = size;
    // Rounds are run by hand (or once at start): a test sees what it did.
    config.warm_pool.refill_interval = Duration::from_secs(3600);
    config
}

/// The names of the cluster's databases matching `pattern` (LIKE), oldest first.
fn databases(cluster: &tenancy_testkit::PgCluster, pattern: &str) -> Vec<String> {
    cluster
        .psql(
            "postgres",
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{pattern}' ORDER BY oid"),
        )
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn spares(engine: &Engine) -> i64 {
    engine.servers().await.unwrap()[0].spares
}

/// Waits until the pool holds `size` spares.
async fn pool_filled(engine: &Engine, size: i64) {
    eventually(Duration::from_secs(30), "pool filled", || async {
        (spares(engine).await == size).then_some(())
    })
    .await;
}

async fn provision_path(engine: &Engine, tenant: &tenancy_core::Tenant) -> Option<ProvisionPath> {
    engine
        .tenant_operations(&tenant.org_id, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|op| op.kind == tenancy_core::OperationKind::Provision)
        .and_then(|op| op.provision_path)
}

/// Onboarding claims a spare (no clone during the request): the tenant's database is the
/// renamed spare, at the template's version, and the pool refills; a spare admits no tenant
/// role (nor anyone: it allows no connections).
#[tokio::test]
async fn onboarding_claims_a_spare_and_the_pool_refills() {
    let fleet = TestFleet::single().unwrap();
    let mut config = pooled(&fleet, 2);
    add_tier(&mut config, "scratch", |scratch| scratch.temp_tables = true);
    let engine = Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    pool_filled(&engine, 2).await;
    let cluster = fleet.cluster("pg-1");
    let before = databases(cluster, "spare\\_%");
    assert_eq!(before.len(), 2);

    let tenant = onboard(&engine, request("9101", "Warm Start")).await;
    assert_eq!(
        provision_path(&engine, &tenant).await,
        Some(ProvisionPath::Warm)
    );
    let after = databases(cluster, "spare\\_%");
    assert_eq!(
        after,
        before[1..],
        "the oldest spare became the tenant's database"
    );
    let server = &engine.servers().await.unwrap()[0];
    assert_eq!(tenant.schema_version, server.template_version);
    // The renamed spare role has the template's privileges: it reads and writes its tables.
    let mut own = connect_own(&engine, cluster, &tenant).await.unwrap();
    sqlx::query("INSERT INTO clients (name) VALUES ('Warm Client')")
        .execute(&mut own)
        .await
        .unwrap();
    let clients: i64 = sqlx::query_scalar("SELECT count(*) FROM clients")
        .fetch_one(&mut own)
        .await
        .unwrap();
    assert_eq!(clients, 1);
    assert!(
        connect_as(&engine, cluster, &tenant, &after[0])
            .await
            .is_err(),
        "a tenant role connected to a spare"
    );
    // Temporary tables as the tier says, a spare claimed or not.
    let temp = "CREATE TEMPORARY TABLE scratch (id int)";
    let refused = sqlx::raw_sql(temp).execute(&mut own).await.unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
    let mut create = request("9102", "Warm Scratch");
    create.tier = Some("scratch".parse().unwrap());
    let scratch = onboard(&engine, create).await;
    assert_eq!(
        provision_path(&engine, &scratch).await,
        Some(ProvisionPath::Warm)
    );
    let mut own = connect_own(&engine, cluster, &scratch).await.unwrap();
    sqlx::raw_sql(temp).execute(&mut own).await.unwrap();

    // The next round brings the pool back to its size.
    let refill = engine.refill_warm_pool().await.unwrap();
    assert_eq!((refill.cloned, refill.dropped), (2, 0));
    assert_eq!(spares(&engine).await, 2);
}

/// A new template version: spares of the old one are never claimed (the tenant is cloned
/// cold), and the next round replaces them.
#[tokio::test]
async fn spares_of_an_old_template_version_are_never_claimed() {
    let fleet = TestFleet::single().unwrap();
    let engine = Engine::start(at_version(&fleet, 2, 4)).await.unwrap();
    engine.refill_warm_pool().await.unwrap();
    assert_eq!(spares(&engine).await, 2);
    engine
        .migrate_fleet(&migrate_to(5), std::sync::Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(spares(&engine).await, 0, "old spares are not available");
    std::mem::forget(engine.listen());
    let op = match engine
        .onboard(request("9201", "After Migration"), &actor())
        .await
        .unwrap()
    {
        tenancy_control::Onboarded::Created { operation, .. } => operation,
        other => panic!("{other:?}"),
    };
    let op = engine
        .drive_operation(op.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    assert_eq!(op.provision_path, Some(ProvisionPath::Cold));
    let tenant = engine.tenant(&org("9201")).await.unwrap();
    assert_eq!(tenant.schema_version, Some(5));
    let refill = engine.refill_warm_pool().await.unwrap();
    assert_eq!((refill.cloned, refill.dropped), (2, 2));
}

/// Two engines (their own registry connections and workers) racing 50 onboardings over a pool
/// of 10: exactly 50 databases, each spare claimed once, the rest cloned cold.
#[tokio::test]
async fn racing_engines_claim_each_spare_once() {
    let fleet = TestFleet::single().unwrap();
    let first = Engine::start(pooled(&fleet, 10)).await.unwrap();
    first.refill_warm_pool().await.unwrap();
    let second = Engine::start(pooled(&fleet, 10)).await.unwrap();
    std::mem::forget(first.run_workers());
    std::mem::forget(second.run_workers());
    // Each engine's refill runs a round at start, then not for an hour: let those find the
    // pool full before the race, so that nothing refills it during the race.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(spares(&first).await, 10);
    let mut ops = Vec::new();
    for i in 0..50 {
        let engine = if i % 2 == 0 { &first } else { &second };
        let org = format!("93{i:02}");
        match engine
            .onboard(request(&org, &format!("Racer {i}")), &actor())
            .await
            .unwrap()
        {
            tenancy_control::Onboarded::Created { operation, .. } => ops.push(operation),
            other => panic!("{other:?}"),
        }
    }
    let mut warm = 0;
    for op in ops {
        let op = first
            .wait_operation(op.id, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
        if op.provision_path == Some(ProvisionPath::Warm) {
            warm += 1;
        }
    }
    let tenants = first
        .all_tenants(&tenancy_control::TenantFilter::default())
        .await
        .unwrap();
    assert_eq!(tenants.len(), 50);
    assert!(tenants.iter().all(|t| t.status == TenantStatus::Active));
    assert_eq!(
        databases(fleet.cluster("pg-1"), "tenant\\_racer%").len(),
        50
    );
    // Each of the 10 spares went to one tenant (a second claim of one would have failed its
    // tenant), and the other 40 were cloned.
    assert_eq!(warm, 10);
    assert_eq!(spares(&first).await, 0);
    assert!(databases(fleet.cluster("pg-1"), "spare\\_%").is_empty());
}

/// A worker dying around each claim step (the claim itself is the onboarding's) leaves work the
/// next one finishes to one database for the tenant, on the warm path; no spare is lost
/// (recorded but gone) or leaked (on the server but not recorded), and no claim is left behind.
#[tokio::test]
async fn a_crash_around_a_claim_resumes_to_one_database_and_no_spare_is_lost_or_leaked() {
    use tenancy_control::faults::Moment;
    use tenancy_core::Step;

    let fleet = TestFleet::single().unwrap();
    let cluster = fleet.cluster("pg-1");
    let points = [
        (Step::Role, Moment::Before),
        (Step::Role, Moment::After),
        (Step::Database, Moment::Before),
        (Step::Database, Moment::After),
        (Step::Lockdown, Moment::After),
    ];
    for (i, (step, moment)) in points.into_iter().enumerate() {
        let org_id = format!("94{i:02}");
        let dying = request(&org_id, &format!("Crash Claim {i}"));
        onboard_and_die(pooled(&fleet, 2), step, moment, dying).await;

        let rescuer = Engine::start(pooled(&fleet, 2)).await.unwrap();
        let workers = rescuer.run_workers();
        let tenant = wait_status(
            &rescuer,
            &org(&org_id),
            TenantStatus::Active,
            Duration::from_secs(60),
        )
        .await;
        workers.shutdown().await;
        assert_eq!(
            provision_path(&rescuer, &tenant).await,
            Some(ProvisionPath::Warm),
            "{step:?} {moment:?}"
        );
        assert_eq!(
            databases(cluster, &format!("{}%", tenant.db_name)),
            [tenant.db_name.to_string()],
            "{step:?} {moment:?}"
        );
        connect_own(&rescuer, cluster, &tenant).await.unwrap();

        let mut registry = registry(&fleet).await;
        let claimed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM spare_databases WHERE claimed_by IS NOT NULL")
                .fetch_one(&mut registry)
                .await
                .unwrap();
        assert_eq!(claimed, 0, "{step:?} {moment:?}");
        let mut recorded: Vec<String> =
            sqlx::query_scalar("SELECT db_name FROM spare_databases ORDER BY db_name")
                .fetch_all(&mut registry)
                .await
                .unwrap();
        let mut present = databases(cluster, "spare\\_%");
        recorded.sort();
        present.sort();
        assert_eq!(recorded, present, "{step:?} {moment:?}");
        // Each spare has its role, and no spare's role is left over.
        let roles: Vec<String> = cluster
            .psql(
                "postgres",
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'spare\\_%' ORDER BY 1",
            )
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(roles, recorded, "{step:?} {moment:?}");
    }
}

/// Onboarding places the tenant and claims its spare itself; with no server taking tenants (the
/// only one full), the operation places it (and claims a spare there) once one does.
#[tokio::test]
async fn an_onboarding_with_no_room_is_placed_with_a_spare_once_a_server_takes_tenants() {
    use tenancy_core::Step;

    let fleet = TestFleet::single().unwrap();
    let engine = Engine::start(pooled(&fleet, 1)).await.unwrap();
    engine.refill_warm_pool().await.unwrap();
    let server: tenancy_core::ServerId = "pg-1".parse().unwrap();
    let capacity = |n: i32| {
        let fleet = &fleet;
        async move {
            sqlx::query("UPDATE database_servers SET capacity = $1")
                .bind(n)
                .execute(&mut registry(fleet).await)
                .await
                .unwrap();
        }
    };
    capacity(0).await;

    let Onboarded::Created { tenant, operation } = engine
        .onboard(request("9601", "No Room"), &actor())
        .await
        .unwrap()
    else {
        panic!("a new tenant");
    };
    assert_eq!(tenant.server_id, None);
    assert_eq!(operation.step, Step::Place);
    assert_eq!(spares(&engine).await, 1, "nothing claimed");
    let workers = engine.run_workers();
    eventually(Duration::from_secs(30), "a placement refused", || async {
        let op = engine.operation(operation.id).await.unwrap();
        (op.attempts >= 1 && op.state == OperationState::Queued).then_some(())
    })
    .await;

    capacity(100).await;
    let tenant = wait_status(
        &engine,
        &tenant.org_id,
        TenantStatus::Active,
        Duration::from_secs(30),
    )
    .await;
    workers.shutdown().await;
    assert_eq!(tenant.server_id, Some(server));
    assert_eq!(
        provision_path(&engine, &tenant).await,
        Some(ProvisionPath::Warm)
    );
    connect_own(&engine, fleet.cluster("pg-1"), &tenant)
        .await
        .unwrap();
}

/// The version of a tenant's database, read in it.
fn database_version(cluster: &tenancy_testkit::PgCluster, tenant: &tenancy_core::Tenant) -> i32 {
    cluster
        .psql(
            tenant.db_name.as_str(),
            "SELECT max(version) FROM refinery_schema_history",
        )
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn at_version(fleet: &TestFleet, pool: u32, version: i32) -> Config {
    let mut config = pooled(fleet, pool);
    config.engine.template_version = Some(version);
    config
}

fn migrate_to(version: i32) -> tenancy_control::fleet::MigrateOptions {
    tenancy_control::fleet::MigrateOptions {
        target: Some(version),
        ..Default::default()
    }
}

/// A spare claimed before a fleet migration moved the template on, whose tenant is activated
/// after the migration listed its tenants: the tenant starts at the new version (its database
/// migrated by its provisioning), never at the spare's.
#[tokio::test]
async fn a_spare_claimed_across_a_template_migration_starts_at_the_new_version() {
    use tenancy_control::faults::Moment;
    use tenancy_core::Step;

    let fleet = TestFleet::single().unwrap();
    let cluster = fleet.cluster("pg-1");
    let dying = request("9501", "Across Versions");
    onboard_and_die(
        at_version(&fleet, 1, 3),
        Step::Activate,
        Moment::Before,
        dying,
    )
    .await;

    // The template moves on while the tenant is still provisioning, so the run leaves it out.
    let rescuer = Engine::start(at_version(&fleet, 1, 3)).await.unwrap();
    let report = rescuer
        .migrate_fleet(&migrate_to(4), std::sync::Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(report.migrated + report.up_to_date, 0, "{report:?}");
    assert_eq!(
        rescuer.servers().await.unwrap()[0].template_version,
        Some(4)
    );

    let workers = rescuer.run_workers();
    let tenant = wait_status(
        &rescuer,
        &org("9501"),
        TenantStatus::Active,
        Duration::from_secs(60),
    )
    .await;
    workers.shutdown().await;
    assert_eq!(
        provision_path(&rescuer, &tenant).await,
        Some(ProvisionPath::Warm)
    );
    assert_eq!(tenant.schema_version, Some(4));
    assert_eq!(database_version(cluster, &tenant), 4);
    // The tables of version 4 are the tenant's to use.
    let mut own = connect_own(&rescuer, cluster, &tenant).await.unwrap();
    sqlx::query("SELECT count(*) FROM alert_rules")
        .execute(&mut own)
        .await
        .unwrap();
}

/// Refilling stays out of the way of work a clone competes with for the server's I/O: while a
/// fleet migration runs, and while a worker clones a tenant cold there, it clones nothing; once
/// they are over (or the cloning worker is dead), the next round fills the pool.
#[tokio::test]
async fn refilling_waits_while_a_fleet_migration_runs_or_a_tenant_is_cloned() {
    use tenancy_control::LockName;
    use tenancy_control::faults::Moment;
    use tenancy_core::Step;

    let fleet = TestFleet::single().unwrap();
    let engine = Engine::start(pooled(&fleet, 2)).await.unwrap();
    let migration = engine
        .try_lock(&LockName::FleetMigration)
        .await
        .unwrap()
        .unwrap();
    let refill = engine.refill_warm_pool().await.unwrap();
    assert_eq!((refill.cloned, refill.deferred), (0, 1));
    migration.release().await;

    // A worker that stops for good as it is about to clone, its lease held for long (its own
    // engine keeps no pool: nothing of it races the onboarding for a spare).
    let mut doomed_config = pooled(&fleet, 0);
    doomed_config.engine.lease = Duration::from_secs(600);
    let dying = request("9701", "Cloned Cold");
    onboard_and_die(doomed_config, Step::Database, Moment::Before, dying).await;
    let refill = engine.refill_warm_pool().await.unwrap();
    assert_eq!((refill.cloned, refill.deferred), (0, 1));
    assert!(databases(fleet.cluster("pg-1"), "spare\\_%").is_empty());

    // Its lease runs out: nothing is cloning any more.
    sqlx::query("UPDATE operations SET lease_expires_at = now() WHERE org_id = '9701'")
        .execute(&mut registry(&fleet).await)
        .await
        .unwrap();
    let refill = engine.refill_warm_pool().await.unwrap();
    assert_eq!((refill.cloned, refill.deferred), (2, 0));
    assert_eq!(spares(&engine).await, 2);
}

/// A pool made smaller, or a server draining, keeps no spares beyond its size: the newest are
/// dropped. A spare a tenant claimed is never dropped: its tenant still gets it.
#[tokio::test]
async fn a_smaller_pool_or_a_draining_server_drops_the_spares_beyond_its_size() {
    use tenancy_control::faults::Moment;
    use tenancy_core::{ServerState, Step};

    let fleet = TestFleet::single().unwrap();
    let cluster = fleet.cluster("pg-1");
    let engine = Engine::start(pooled(&fleet, 3)).await.unwrap();
    engine.refill_warm_pool().await.unwrap();
    assert_eq!(databases(cluster, "spare\\_%").len(), 3);

    // A tenant claims the oldest spare; its worker stops before making it the tenant's (and
    // its engine's refill may have cloned another one meanwhile).
    let dying = request("9801", "Kept Claim");
    onboard_and_die(pooled(&fleet, 3), Step::Role, Moment::Before, dying).await;
    let spares_before = databases(cluster, "spare\\_%");
    assert!(spares_before.len() >= 3);

    let smaller = Engine::start(pooled(&fleet, 1)).await.unwrap();
    let refill = smaller.refill_warm_pool().await.unwrap();
    assert_eq!(
        (refill.cloned, refill.dropped),
        (0, spares_before.len() - 2)
    );
    assert_eq!(
        databases(cluster, "spare\\_%"),
        spares_before[..2],
        "the claimed spare and the oldest free one are kept"
    );

    smaller
        .set_server_state(&"pg-1".parse().unwrap(), ServerState::Draining, &actor())
        .await
        .unwrap();
    let refill = smaller.refill_warm_pool().await.unwrap();
    assert_eq!((refill.cloned, refill.dropped), (0, 1));
    assert_eq!(databases(cluster, "spare\\_%"), spares_before[..1]);
    assert_eq!(spares(&smaller).await, 0);

    // The claim is finished on the draining server, warm.
    sqlx::query("UPDATE operations SET lease_expires_at = now() WHERE org_id = '9801'")
        .execute(&mut registry(&fleet).await)
        .await
        .unwrap();
    let workers = smaller.run_workers();
    let tenant = wait_status(
        &smaller,
        &org("9801"),
        TenantStatus::Active,
        Duration::from_secs(60),
    )
    .await;
    workers.shutdown().await;
    assert_eq!(
        provision_path(&smaller, &tenant).await,
        Some(ProvisionPath::Warm)
    );
    assert!(databases(cluster, "spare\\_%").is_empty());
}

/// With `clones_at_once`, a refill clones that many spares together; each is locked down.
#[tokio::test]
async fn a_refill_clones_several_spares_at_once_when_told() {
    let fleet = TestFleet::single().unwrap();
    let mut config = pooled(&fleet, 5);
    config.warm_pool.clones_at_once = 2;
    let engine = Engine::start(config).await.unwrap();
    let refill = engine.refill_warm_pool().await.unwrap();
    assert_eq!((refill.cloned, refill.dropped), (5, 0));
    assert_eq!(spares(&engine).await, 5);
    let open: Vec<String> = fleet
        .cluster("pg-1")
        .psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE datname LIKE 'spare\\_%'
               AND (datallowconn OR has_database_privilege('public', oid, 'CONNECT'))",
        )
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(open.is_empty(), "spares open to connections: {open:?}");
}

/// A tenant is active only once its role has logged in to its database, warm or cold: the
/// activating transaction, written while the login is tried, is rolled back when the server
/// refuses it; a retry once the server lets tenants in activates it.
#[tokio::test]
async fn a_tenant_the_server_does_not_let_in_is_never_made_active() {
    let fleet = TestFleet::single().unwrap();
    let mut config = pooled(&fleet, 1);
    config.engine.max_attempts = 1;
    let engine = Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    pool_filled(&engine, 1).await;
    let cluster = fleet.cluster("pg-1");
    let spare = databases(cluster, "spare\\_%");
    cluster
        .psql("postgres", "CREATE ROLE probe LOGIN PASSWORD 'probe'")
        .unwrap();
    let admin = cluster.admin_user();
    let rules = cluster
        .set_hba(&format!(
            "local all all trust\nhost all {admin} 127.0.0.1/32 scram-sha-256\n\
             host all all 127.0.0.1/32 reject\n"
        ))
        .unwrap();
    // Past authentication, the probe is refused CONNECT on the maintenance database.
    let probe = cluster.url_as("probe", "probe", "postgres");
    let refused_by_rules = || async {
        let refused = sqlx::PgConnection::connect(&probe).await.unwrap_err();
        refused.to_string().contains("pg_hba.conf rejects")
    };
    eventually(Duration::from_secs(10), "logins are refused", || async {
        refused_by_rules().await.then_some(())
    })
    .await;

    // The first claims the spare, the second (the pool now empty) is cloned.
    for (org_id, name) in [("9301", "Warm Refused"), ("9302", "Cold Refused")] {
        let failed = onboard_until_failed(&engine, org_id, name).await;
        let reason = failed.status_reason.as_deref().unwrap_or_default();
        assert!(reason.contains("pg_hba.conf rejects"), "{reason}");
        assert_eq!(failed.schema_version, None, "never activated: {failed:?}");
    }
    assert!(
        databases(cluster, "spare\\_%").is_empty(),
        "{spare:?} was claimed"
    );
    assert_eq!(fleet.tenant_databases("pg-1").len(), 2);

    cluster.set_hba(&rules).unwrap();
    eventually(
        Duration::from_secs(10),
        "logins are let in again",
        || async { (!refused_by_rules().await).then_some(()) },
    )
    .await;
    let mut paths = Vec::new();
    for org_id in ["9301", "9302"] {
        let tenant = retry_until_active(&engine, &org(org_id)).await;
        connect_own(&engine, cluster, &tenant).await.unwrap();
        paths.push(provision_path(&engine, &tenant).await);
    }
    assert_eq!(
        paths,
        [Some(ProvisionPath::Warm), Some(ProvisionPath::Cold)]
    );
}
