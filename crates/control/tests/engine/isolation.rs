use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tenancy_control::Engine;
use tenancy_control::faults::Moment;
use tenancy_core::{OperationKind, RoleName, Step, TenantStatus};
use tenancy_testkit::{PgCluster, TestFleet, eventually};

use crate::helpers::*;

#[tokio::test]
async fn a_tenant_role_reaches_only_its_own_database_and_cannot_escalate() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let a = onboard(&engine, request("4001", "Alpha")).await;
    let b = onboard(&engine, request("4002", "Beta")).await;
    let cluster = fleet.cluster("pg-1");
    let b_db = b.db_name.as_str();

    for other in [
        b_db,
        "tenant_template",
        "postgres",
        "template1",
        "tenancy_registry",
    ] {
        let err = connect_as(&engine, cluster, &a, other).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied for database"),
            "{other}: {err}"
        );
    }

    let mut conn = connect_own(&engine, cluster, &a).await.unwrap();
    for (sql, expected) in [
        (
            "CREATE DATABASE evil",
            "permission denied to create database",
        ),
        ("CREATE ROLE evil", "permission denied to create role"),
        ("DROP DATABASE tenant_alpha", "must be owner of database"),
        ("ALTER ROLE tenant_alpha SUPERUSER", "must be superuser"),
        (
            "ALTER DATABASE tenant_alpha CONNECTION LIMIT 1000",
            "must be owner of database",
        ),
        (
            "GRANT CONNECT ON DATABASE tenant_beta TO tenant_alpha",
            "permission denied",
        ),
    ] {
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{sql}: {err}");
    }
    // Privileges of its own, in its own database only: member of no role (not the template's
    // app role, which every tenant would share), no CREATE in schema public, the migration
    // history readable but not writable.
    for (sql, expected) in [
        ("SET ROLE tenancy_app", "permission denied to set role"),
        (
            "CREATE TABLE mine (id int)",
            "permission denied for schema public",
        ),
        (
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (99, 'x', 'x', 'x')",
            "permission denied for table refinery_schema_history",
        ),
    ] {
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{sql}: {err}");
    }
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_auth_members WHERE member = 'tenant_alpha'::regrole"
            )
            .unwrap(),
        "0"
    );
    // Still a normal tenant inside its own database.
    sqlx::raw_sql("INSERT INTO teams (name) VALUES ('ops')")
        .execute(&mut conn)
        .await
        .unwrap();
    let version: i32 = sqlx::query_scalar("SELECT max(version) FROM refinery_schema_history")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, tenancy_control::migrate::latest_template_version());
    assert_eq!(cluster.psql("postgres", "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'tenant_alpha'").unwrap(), "f|f|f");
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'tenant_alpha'"
            )
            .unwrap(),
        "postgres"
    );
}

/// A freshly cloned database accepts no connection until its lockdown ran: not another tenant's
/// role (whose password opened any database with the default ACL before), not its own.
#[tokio::test]
async fn a_new_database_is_closed_until_it_is_locked_down() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine(&fleet).await;
    let workers = engine.run_workers();
    let other = onboard(&engine, request("4101", "Other Tenant")).await;
    workers.shutdown().await;
    let cluster = fleet.cluster("pg-1");

    // A worker that dies right after the clone: the database exists, the lockdown has not run.
    let crashed = Arc::new(AtomicBool::new(false));
    let flag = crashed.clone();
    let fault = move |kind, step, moment| {
        kind == OperationKind::Provision
            && step == Step::Database
            && moment == Moment::After
            && !flag.swap(true, Ordering::SeqCst)
    };
    let mut doomed_config = config(&fleet);
    doomed_config.engine.workers = 1;
    let doomed = Engine::start_with_faults(doomed_config, Arc::new(fault))
        .await
        .unwrap();
    let doomed_workers = doomed.run_workers();
    doomed
        .onboard(request("4102", "Fresh Tenant"), &actor())
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the clone is made", || async {
        crashed.load(Ordering::SeqCst).then_some(())
    })
    .await;
    doomed_workers.shutdown().await;
    assert_eq!(
        cluster
            .psql(
                "postgres",
                "SELECT datallowconn FROM pg_database WHERE datname = 'tenant_fresh_tenant'"
            )
            .unwrap(),
        "f"
    );
    let fresh = engine.tenant(&org("4102")).await.unwrap();
    for (who, tenant) in [("another tenant", &other), ("its own role", &fresh)] {
        let err = connect_as(&engine, cluster, tenant, "tenant_fresh_tenant")
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("not currently accepting connections"),
            "{who}: {err}"
        );
    }

    // Taken over, locked down, open to its own role only.
    let workers = engine.run_workers();
    let fresh = wait_status(
        &engine,
        &org("4102"),
        TenantStatus::Active,
        Duration::from_secs(30),
    )
    .await;
    workers.shutdown().await;
    connect_own(&engine, cluster, &fresh).await.unwrap();
    let err = connect_as(&engine, cluster, &other, "tenant_fresh_tenant")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("permission denied for database"),
        "{err}"
    );
}

/// Opening a database to a tenant's role (the lockdown's first part, run by every provisioning,
/// convergence and move) refuses one tagged for another tenant, changing nothing: the role gets
/// no CONNECT, the database stays closed and keeps its tag.
#[tokio::test]
async fn a_database_tagged_for_another_tenant_is_never_opened_to_a_role() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let tenant = onboard(&engine, request("4103", "Opener")).await;
    let cluster = fleet.cluster("pg-1");
    cluster
        .psql(
            "postgres",
            "CREATE DATABASE tenant_someone_else ALLOW_CONNECTIONS false",
        )
        .unwrap();
    cluster
        .psql(
            "postgres",
            "REVOKE ALL ON DATABASE tenant_someone_else FROM PUBLIC;
             COMMENT ON DATABASE tenant_someone_else IS 'tenancy:org_id=9999'",
        )
        .unwrap();
    let admin = tenancy_control::pgadmin::ServerAdmin::new(&config(&fleet).servers[0], 2).unwrap();
    let err = admin
        .open_to(
            &"tenant_someone_else".parse().unwrap(),
            &tenant.role_name(),
            &tenant.org_id,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tagged for someone else"), "{err}");
    assert_eq!(
        cluster
            .psql(
                "postgres",
                &format!(
                    "SELECT datallowconn, has_database_privilege('{}', oid, 'CONNECT'),
                            shobj_description(oid, 'pg_database')
                     FROM pg_database WHERE datname = 'tenant_someone_else'",
                    tenant.role_name()
                )
            )
            .unwrap(),
        "f|f|tenancy:org_id=9999"
    );
}

/// A tenant role holds in its database exactly the privileges the template grants the app role
/// there: for a tenant cloned before a template migration (and migrated by it), and for tenants
/// cloned after it by the same engine, which remembers the grants of each template version it
/// has seen and must not use an older version's for a newer clone.
#[tokio::test]
async fn a_tenant_role_holds_exactly_the_app_privileges_of_its_template_version() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    config.engine.template_version = Some(3);
    let engine = Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let before = onboard(&engine, request("4101", "Before Alerts")).await;
    assert_eq!(before.schema_version, Some(3));
    let to_v4 = tenancy_control::fleet::MigrateOptions {
        target: Some(4),
        ..Default::default()
    };
    engine
        .migrate_fleet(&to_v4, Arc::new(|_| {}))
        .await
        .unwrap();
    let after = onboard(&engine, request("4102", "After Alerts")).await;
    let again = onboard(&engine, request("4103", "Again Alerts")).await;

    let cluster = fleet.cluster("pg-1");
    for tenant in [&before, &after, &again] {
        let (same, held) =
            mirrors_the_app_role(cluster, tenant.db_name.as_str(), &tenant.role_name());
        assert!(same, "{}: holds what tenancy_app holds", tenant.slug);
        assert!(held > 50, "{}: {held} privileges", tenant.slug);
        let on_alert_rules = cluster
            .psql(
                tenant.db_name.as_str(),
                &format!(
                    "SELECT count(*) FROM aclexplode((SELECT relacl FROM pg_class
                                                     WHERE oid = 'alert_rules'::regclass))
                     WHERE grantee = '{}'::regrole",
                    tenant.role_name()
                ),
            )
            .unwrap();
        assert_eq!(on_alert_rules, "4", "{}: version 4's table", tenant.slug);
        let mut conn = connect_own(&engine, cluster, tenant).await.unwrap();
        sqlx::raw_sql(
            "INSERT INTO alert_rules (name, metric, threshold) VALUES ('disk full', 'disk', 0.9)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

/// What a tenant granted the app role itself (on a temporary table, through its own default
/// privileges) is not the template's: a lockdown repeated in its live database (as the
/// reconciler's repair does), the first of an admin that has not read the template's grants yet,
/// does not carry it into the clones that follow.
#[tokio::test]
async fn what_a_tenant_grants_the_app_role_never_reaches_other_databases() {
    let fleet = TestFleet::single().unwrap();
    let mut with_temp_tables = config(&fleet);
    for limits in with_temp_tables.tiers.values_mut() {
        limits.temp_tables = true;
    }
    let engine = Engine::start(with_temp_tables).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("4104", "Granter")).await;
    let cluster = fleet.cluster("pg-1");
    let mut session = connect_own(&engine, cluster, &tenant).await.unwrap();
    sqlx::raw_sql(
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO tenancy_app;
         CREATE TEMPORARY TABLE mine (id int);
         GRANT SELECT ON mine TO tenancy_app;",
    )
    .execute(&mut session)
    .await
    .unwrap();

    let admin = tenancy_control::pgadmin::ServerAdmin::new(&config(&fleet).servers[0], 2).unwrap();
    let role = tenant.role_name();
    admin
        .lockdown(&tenant.db_name, &role, &tenant.org_id)
        .await
        .unwrap();
    let spare: tenancy_core::DbName = "tenant_spare_probe".parse().unwrap();
    admin.clone_spare(&spare).await.unwrap();
    cluster
        .psql(
            "postgres",
            "ALTER DATABASE tenant_spare_probe ALLOW_CONNECTIONS true",
        )
        .unwrap();
    let (same, held) =
        mirrors_the_app_role(cluster, spare.as_str(), &spare.as_str().parse().unwrap());
    assert!(
        same,
        "the spare's role holds what tenancy_app holds in the template"
    );
    assert!(held > 50, "{held} privileges");
    assert_eq!(
        cluster
            .psql(
                spare.as_str(),
                &format!(
                    "SELECT count(*) FROM pg_default_acl WHERE defaclrole = '{role}'::regrole"
                )
            )
            .unwrap(),
        "0",
        "no default privileges of the tenant's role"
    );
    // The tenant's session lived through it all.
    sqlx::raw_sql("SELECT count(*) FROM mine")
        .execute(&mut session)
        .await
        .unwrap();
}

/// Whether `role` holds in `db` exactly the privileges `tenancy_app` holds there (on relations,
/// schemas, routines, and as default privileges), and how many.
fn mirrors_the_app_role(cluster: &PgCluster, db: &str, role: &RoleName) -> (bool, i32) {
    let compared = cluster
        .psql(
            db,
            &format!(
                "WITH acl (grantee, object, privilege) AS (
                   SELECT a.grantee, 'relation ' || c.oid::regclass, a.privilege_type
                   FROM pg_class c, aclexplode(c.relacl) a
                   UNION ALL
                   SELECT a.grantee, 'schema ' || n.nspname, a.privilege_type
                   FROM pg_namespace n, aclexplode(n.nspacl) a
                   UNION ALL
                   SELECT a.grantee, 'routine ' || p.oid::regprocedure, a.privilege_type
                   FROM pg_proc p, aclexplode(p.proacl) a
                   UNION ALL
                   SELECT a.grantee, format('default %s in %s', d.defaclobjtype, d.defaclnamespace),
                          a.privilege_type
                   FROM pg_default_acl d, aclexplode(d.defaclacl) a),
                 held (who, what) AS (
                   SELECT grantee, array_agg(object || ' ' || privilege ORDER BY object, privilege)
                   FROM acl GROUP BY grantee)
                 SELECT (SELECT what FROM held WHERE who = 'tenancy_app'::regrole)
                          = (SELECT what FROM held WHERE who = '{role}'::regrole),
                        (SELECT cardinality(what) FROM held WHERE who = '{role}'::regrole)"
            ),
        )
        .unwrap();
    match compared.split_once('|') {
        Some((same, held)) => (same == "t", held.parse().unwrap_or(0)),
        None => panic!("{compared}"),
    }
}

/// A tenant's session holding a lock cannot stall the engine (security review 2, N14): a fleet
/// migration waits at most the admin lock timeout for the tenant's table, reports the tenant
/// failed and goes on; once the lock is gone it migrates.
#[tokio::test]
async fn a_tenant_holding_a_lock_fails_its_migration_instead_of_stalling_it() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    config.engine.template_version = Some(4);
    let engine = Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let tenant = onboard(&engine, request("4301", "Lock Holder")).await;
    let mut held = connect_own(&engine, fleet.cluster("pg-1"), &tenant)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE alert_rule_scopes IN ACCESS EXCLUSIVE MODE")
        .execute(&mut held)
        .await
        .unwrap();

    let to_v5 = tenancy_control::fleet::MigrateOptions {
        target: Some(5),
        keep_going: true,
        ..Default::default()
    };
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        engine.migrate_fleet(&to_v5, Arc::new(|_| {})),
    )
    .await
    .expect("the migration does not wait for the tenant's lock")
    .unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].1.contains("lock timeout"), "{report:?}");

    sqlx::raw_sql("ROLLBACK").execute(&mut held).await.unwrap();
    let report = engine
        .migrate_fleet(&to_v5, Arc::new(|_| {}))
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().schema_version,
        Some(5)
    );
}
