//! tenantctl against real clusters: the fleet is set up with the engine, then driven through the
//! real binary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tenancy_control::{Actor, Config, Engine, Onboarded};
use tenancy_core::{CreateTenant, OperationState};
use tenancy_testkit::TestFleet;

mod common;
use common::{all_succeed, onboard_all, queue, request};

/// The template's newest version: what `migrate` brings every tenant to.
fn latest() -> i32 {
    tenancy_control::migrate::latest_template_version()
}

/// Two servers in one region (the registry on the first), driven through the real binary.
struct Fleet {
    fleet: TestFleet,
}

impl Fleet {
    fn new() -> Self {
        let fleet = TestFleet::builder()
            .server("pg-0", "local")
            .server("pg-1", "local")
            .build()
            .unwrap();
        Self { fleet }
    }

    /// The fleet as an engine configuration, with templates pinned to `template_version`.
    fn config(&self, template_version: Option<i32>) -> Config {
        let mut config = Config::from_toml(&self.fleet.toml(), |v| self.fleet.secret(v)).unwrap();
        config.engine.template_version = template_version;
        config
    }

    /// Onboards `n` tenants with templates at version 3, so the later versions are the "new
    /// migrations".
    async fn onboard(&self, n: usize) -> Engine {
        let engine = Engine::start(self.config(Some(3))).await.unwrap();
        let workers = engine.run_workers();
        onboard_all(
            &engine,
            (0..n).map(|i| request(1000 + i, &format!("Fleet {i}"))),
        )
        .await;
        workers.shutdown().await;
        engine
    }

    fn command(&self) -> Command {
        let mut command = self.fleet.command(env!("CARGO_BIN_EXE_tenantctl")).unwrap();
        command.arg("--output").arg("json").stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Schema version of a tenant database, read from the database itself.
    fn version(&self, db: &str) -> i32 {
        for server in &self.fleet.servers {
            if let Ok(v) = server
                .cluster
                .psql(db, "SELECT max(version) FROM refinery_schema_history")
            {
                return v.parse().unwrap();
            }
        }
        panic!("{db} not found")
    }

    fn registry(&self, sql: &str) -> String {
        self.fleet
            .cluster("pg-0")
            .psql("tenancy_registry", sql)
            .unwrap()
    }
}

fn events(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn migrated_orgs(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "tenant_migrated")
        .map(|e| e["org_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn fifty_tenants_over_two_servers_reach_the_new_version_and_new_tenants_are_born_at_it() {
    let fleet = Fleet::new();
    let engine = fleet.onboard(50).await;
    let per_server: Vec<usize> = fleet
        .fleet
        .servers
        .iter()
        .map(|s| {
            s.cluster
                .psql(
                    "postgres",
                    "SELECT count(*) FROM pg_database WHERE datname LIKE 'tenant\\_fleet%'",
                )
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(per_server, [25, 25]);
    assert_eq!(fleet.version("tenant_fleet_0"), 3);

    let status = fleet.run(&["status"]);
    assert_eq!(
        status.status.code(),
        Some(0),
        "no drift yet: templates are at 3 too"
    );

    let dry = fleet.run(&["migrate", "--dry-run"]);
    assert!(dry.status.success());
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["tenants"].as_array().unwrap().len(), 50);
    assert_eq!(
        fleet.version("tenant_fleet_0"),
        3,
        "a dry run changes nothing"
    );

    let run = fleet.run(&["migrate", "--canary", "2", "--concurrency", "4"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let run_events = events(&run);
    assert_eq!(
        run_events
            .iter()
            .filter(|e| e["event"] == "template_migrated")
            .count(),
        2
    );
    assert_eq!(migrated_orgs(&run_events).len(), 50);
    assert_eq!(run_events.iter().filter(|e| e["canary"] == true).count(), 2);
    let summary = run_events.iter().find(|e| e["event"] == "summary").unwrap();
    assert_eq!(summary["report"]["migrated"], 50);
    let newest = latest();
    for i in 0..50 {
        assert_eq!(fleet.version(&format!("tenant_fleet_{i}")), newest);
    }
    for s in &fleet.fleet.servers {
        assert_eq!(
            s.cluster
                .psql(
                    "tenant_template",
                    "SELECT max(version) FROM refinery_schema_history"
                )
                .unwrap(),
            newest.to_string()
        );
    }
    let tenants = engine
        .list_tenants(&tenancy_control::TenantFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        tenants.iter().all(|t| t.schema_version == Some(newest)),
        "the registry records versions"
    );

    // New tenants are cloned at the new version (an engine no longer pinned).
    let engine = Engine::start(fleet.config(None)).await.unwrap();
    let workers = engine.run_workers();
    let out = fleet.run(&["tenants", "create", "5000", "Newcomer", "--wait", "60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    workers.shutdown().await;
    assert_eq!(fleet.version("tenant_newcomer"), latest());

    // A second run has nothing to do.
    let again = fleet.run(&["migrate"]);
    assert!(again.status.success());
    assert!(migrated_orgs(&events(&again)).is_empty());
}

#[tokio::test]
async fn a_poisoned_tenant_fails_alone_keeps_its_version_and_a_rerun_after_the_fix_finishes() {
    let fleet = Fleet::new();
    let engine = fleet.onboard(6).await;
    // Tenant 1000 (fleet_0) gets an object that collides with migration 4.
    let poisoned = &fleet
        .fleet
        .servers
        .iter()
        .find(|s| s.cluster.psql("tenant_fleet_0", "SELECT 1").is_ok())
        .unwrap()
        .cluster;
    poisoned
        .psql("tenant_fleet_0", "CREATE TABLE alert_rules (id int)")
        .unwrap();

    // Without --keep-going the run halts at the failure.
    let halted = fleet.run(&[
        "migrate",
        "--concurrency",
        "1",
        "--org",
        "1000",
        "--org",
        "1001",
        "--org",
        "1002",
    ]);
    assert_eq!(halted.status.code(), Some(1));
    let halted_events = events(&halted);
    assert!(
        halted_events.iter().any(|e| e["event"] == "halted"),
        "{halted_events:?}"
    );
    let summary = &halted_events
        .iter()
        .find(|e| e["event"] == "summary")
        .unwrap()["report"];
    // Tenants already in flight may have finished meanwhile (servers migrate in parallel, several
    // at a time): what is certain is that the failed one is reported and kept at its version.
    assert_eq!(summary["failed"][0][0], "1000", "{summary}");
    assert_eq!(
        fleet.version("tenant_fleet_0"),
        3,
        "the failed tenant stays at its version"
    );
    let recorded = engine.tenant(&"1000".parse().unwrap()).await.unwrap();
    assert!(
        recorded
            .last_migration_error
            .as_deref()
            .unwrap()
            .contains("alert_rules"),
        "{recorded:?}"
    );

    // With --keep-going the others migrate; the run still exits non-zero.
    let kept = fleet.run(&["migrate", "--keep-going"]);
    assert_eq!(kept.status.code(), Some(1));
    for i in 1..6 {
        assert_eq!(fleet.version(&format!("tenant_fleet_{i}")), latest());
    }
    assert_eq!(fleet.version("tenant_fleet_0"), 3);
    let status = fleet.run(&["status", "--drift-only"]);
    let drift: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(drift.as_array().unwrap().len(), 1);
    assert_eq!(drift[0]["drift"], "behind");

    // A failing canary stops the run before anything else.
    poisoned.psql("tenant_fleet_0", "SELECT 1").unwrap();
    let canary = fleet.run(&["migrate", "--canary", "1", "--org", "1000"]);
    assert_eq!(canary.status.code(), Some(1));

    // Fixed: the rerun finishes.
    poisoned
        .psql("tenant_fleet_0", "DROP TABLE alert_rules")
        .unwrap();
    let fixed = fleet.run(&["migrate"]);
    assert!(
        fixed.status.success(),
        "{}",
        String::from_utf8_lossy(&fixed.stdout)
    );
    assert_eq!(migrated_orgs(&events(&fixed)), ["1000"]);
    assert_eq!(fleet.version("tenant_fleet_0"), latest());
    let recorded = engine.tenant(&"1000".parse().unwrap()).await.unwrap();
    assert_eq!(recorded.last_migration_error, None);
    let clean = fleet
        .fleet
        .command(env!("CARGO_BIN_EXE_tenantctl"))
        .unwrap()
        .args(["--output", "table", "status", "--drift-only"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&clean.stdout).starts_with("no drift"),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    // A schema that differs at the same version is drift too.
    poisoned
        .psql(
            "tenant_fleet_0",
            "ALTER TABLE tickets ADD COLUMN hand_made int",
        )
        .unwrap();
    let status = fleet.run(&["status", "--drift-only"]);
    let drift: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(drift[0]["drift"], "schema_differs", "{drift}");
}

#[tokio::test]
async fn a_killed_run_is_finished_by_the_next_with_no_tenant_migrated_twice() {
    let fleet = Fleet::new();
    fleet.onboard(30).await;
    let mut child = fleet
        .command()
        .args(["migrate", "--concurrency", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_run = Vec::new();
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let done = event["event"] == "tenant_migrated";
        first_run.push(event);
        if first_run
            .iter()
            .filter(|e| e["event"] == "tenant_migrated")
            .count()
            >= 5
            && done
        {
            child.kill().unwrap();
            break;
        }
    }
    let _ = child.wait();
    let first = migrated_orgs(&first_run);
    assert!(
        first.len() >= 5 && first.len() < 30,
        "killed mid-run after {} tenants",
        first.len()
    );

    let rerun = fleet.run(&["migrate"]);
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let second = migrated_orgs(&events(&rerun));
    let mut count: HashMap<String, usize> = HashMap::new();
    for org in first.iter().chain(second.iter()) {
        *count.entry(org.clone()).or_default() += 1;
    }
    assert!(
        count.values().all(|n| *n == 1),
        "a tenant was migrated twice: {count:?}"
    );
    for i in 0..30 {
        assert_eq!(fleet.version(&format!("tenant_fleet_{i}")), latest());
    }
}

#[test]
fn destructive_commands_refuse_without_yes_before_connecting() {
    // No registry at all: the refusal comes before any connection is tried.
    let out = Command::new(env!("CARGO_BIN_EXE_tenantctl"))
        .args(["tenants", "delete", "1000"])
        .env(
            "TENANCY_REGISTRY__URL",
            "postgres://nobody@127.0.0.1:1/nothing",
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--yes"), "{stderr}");
    assert!(!stderr.contains("configuration"), "{stderr}");
}

/// Reading commands change nothing: no registry migration, no server records written, no DDL.
#[tokio::test]
async fn reading_commands_write_nothing() {
    let fleet = Fleet::new();
    // An unmigrated registry: the tool refuses, and creates no table and no template.
    let out = fleet.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("start the registry"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fleet.registry("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0"
    );
    assert_eq!(
        fleet
            .fleet
            .cluster("pg-0")
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname = 'tenant_template'"
            )
            .unwrap(),
        "0"
    );

    // A migrated registry whose server records differ from the file: reads leave them be.
    fleet.onboard(1).await;
    fleet.registry("UPDATE database_servers SET capacity = 7 WHERE id = 'pg-1'");
    let migrations = fleet.registry("SELECT count(*) FROM refinery_schema_history");
    for args in [
        &["status"][..],
        &["tenants", "list"],
        &["tenants", "show", "1000"],
        &["servers", "list"],
        &["reconcile"],
        &["migrate", "--dry-run"],
    ] {
        let out = fleet.run(args);
        assert!(
            out.status.code() == Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        fleet.registry("SELECT capacity FROM database_servers WHERE id = 'pg-1'"),
        "7"
    );
    assert_eq!(
        fleet.registry("SELECT count(*) FROM refinery_schema_history"),
        migrations
    );

    // `servers sync` shows the difference, applies it only when told to.
    let out = fleet.run(&["servers", "sync"]);
    assert_eq!(out.status.code(), Some(2), "no terminal, no --yes");
    let changes: Value = serde_json::from_slice(&out.stdout).unwrap();
    let change = changes
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "pg-1")
        .unwrap();
    assert_eq!(change["change"], "changed");
    assert_eq!(change["fields"][0], "capacity: 7 -> 1000");
    assert_eq!(
        fleet.registry("SELECT capacity FROM database_servers WHERE id = 'pg-1'"),
        "7"
    );
    let out = fleet.run(&["servers", "sync", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fleet.registry("SELECT capacity FROM database_servers WHERE id = 'pg-1'"),
        "1000"
    );
}

/// A waiting command runs its own operation when no registry runs, and nobody else's.
#[tokio::test]
async fn a_waiting_command_takes_its_own_operation_only() {
    let fleet = Fleet::new();
    let engine = fleet.onboard(0).await;
    let Onboarded::Created { operation, .. } = engine
        .onboard(
            CreateTenant::new("2000".parse().unwrap(), "Someone Else".parse().unwrap()),
            &Actor::named("test"),
        )
        .await
        .unwrap()
    else {
        panic!("new tenant");
    };
    let out = fleet.run(&["tenants", "create", "2001", "Mine", "--wait", "60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        engine
            .tenant(&"2001".parse().unwrap())
            .await
            .unwrap()
            .status
            .as_str(),
        "active"
    );
    let other = engine.operation(operation.id).await.unwrap();
    assert_eq!((other.state, other.attempts), (OperationState::Queued, 0));
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        vec!["--help"],
        vec!["migrate", "--help"],
        vec!["status", "--help"],
        vec!["tenants", "create", "--help"],
        vec!["servers", "add", "--help"],
        vec!["reconcile", "--help"],
        vec!["psql", "--help"],
        vec!["tenants", "--help"],
        vec!["tenants", "list", "--help"],
        vec!["tenants", "show", "--help"],
        vec!["tenants", "suspend", "--help"],
        vec!["tenants", "resume", "--help"],
        vec!["tenants", "delete", "--help"],
        vec!["servers", "--help"],
        vec!["servers", "list", "--help"],
        vec!["servers", "drain", "--help"],
        vec!["servers", "activate", "--help"],
        vec!["servers", "sync", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tenantctl"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Example"), "{args:?} has no example:\n{help}");
    }
}

/// Agencies from the command line, with no registry running: create an agency and clients of
/// it, print the tree, suspend the agency (its clients' suspensions are the command's work
/// too), and delete it with its clients.
#[tokio::test]
async fn agencies_are_created_listed_as_a_tree_and_cascade_from_the_command_line() {
    let fleet = Fleet::new();
    let engine = fleet.onboard(0).await;
    let succeed = |args: &[&str]| {
        let out = fleet.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    succeed(&[
        "tenants",
        "create",
        "3000",
        "Northwind MSP",
        "--kind",
        "agency",
        "--wait",
        "60s",
    ]);
    for (org, name) in [("3001", "Contoso"), ("3002", "Fabrikam")] {
        succeed(&[
            "tenants", "create", org, name, "--agency", "3000", "--wait", "60s",
        ]);
    }
    let refused = fleet.run(&[
        "tenants", "create", "3003", "Orphan", "--agency", "3999", "--wait", "60s",
    ]);
    assert!(!refused.status.success());

    let tree = succeed(&["tenants", "list", "--tree", "--output", "table"]);
    let rows: Vec<&str> = tree.lines().filter(|l| l.contains("300")).collect();
    assert_eq!(rows.len(), 3, "{tree}");
    assert!(
        rows[0].contains("Northwind MSP") && rows[0].contains("agency"),
        "{tree}"
    );
    assert!(
        rows[1].contains("├─ Contoso") && rows[1].contains("client"),
        "{tree}"
    );
    assert!(rows[2].contains("└─ Fabrikam"), "{tree}");
    let found = succeed(&["tenants", "list", "--search", "FABRI", "--output", "json"]);
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    let found: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["org_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["3002"], "the name contains it, any case");

    succeed(&["tenants", "suspend", "3000", "--yes"]);
    let status = |org: &'static str| {
        let engine = engine.clone();
        async move {
            engine
                .tenant(&org.parse().unwrap())
                .await
                .unwrap()
                .status
                .to_string()
        }
    };
    assert_eq!(status("3001").await, "suspended");
    assert_eq!(status("3002").await, "suspended");

    let refused = fleet.run(&["tenants", "delete", "3000", "--yes"]);
    assert!(!refused.status.success());
    assert_eq!(status("3000").await, "suspended");
    succeed(&["tenants", "delete", "3000", "--cascade", "--yes"]);
    for org in ["3000", "3001", "3002"] {
        assert_eq!(status(org).await, "deleted", "{org}");
    }
}

/// Onboardings racing `tenantctl migrate` in its own process, over a warm pool and beyond it
/// (spares and clones made at the old version): every tenant ends at the run's version, whether
/// the run listed it or its own provisioning migrated it.
#[tokio::test]
async fn onboardings_racing_a_fleet_migration_all_end_at_its_version() {
    let fleet = Fleet::new();
    let mut config = fleet.config(Some(3));
    config.warm_pool.size = 4;
    config.warm_pool.refill_interval = Duration::from_secs(3600);
    let engine = Engine::start(config).await.unwrap();
    engine.refill_warm_pool().await.unwrap();
    let workers = engine.run_workers();

    let mut operations = Vec::new();
    let mut migration = None;
    for i in 0..24 {
        if i == 4 {
            migration = Some(
                fleet
                    .command()
                    .args(["migrate", "--target", "4"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        let racer = request(7000 + i, &format!("Racing Migration {i}"));
        operations.push(queue(&engine, racer).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = migration.unwrap().wait_with_output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    all_succeed(&engine, operations).await;
    workers.shutdown().await;
    let tenants = engine
        .all_tenants(&tenancy_control::TenantFilter::default())
        .await
        .unwrap();
    assert_eq!(tenants.len(), 24);
    for tenant in &tenants {
        assert_eq!(tenant.schema_version, Some(4), "{}", tenant.org_id);
        assert_eq!(
            fleet.version(tenant.db_name.as_str()),
            4,
            "{}",
            tenant.org_id
        );
    }
}

#[tokio::test]
async fn template_only_moves_the_templates_and_no_tenant() {
    let fleet = Fleet::new();
    let _engine = fleet.onboard(2).await;
    assert_eq!(fleet.version("tenant_template"), 3);
    let run = fleet.run(&["migrate", "--template-only"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(fleet.version("tenant_template"), latest());
    assert_eq!(fleet.version("tenant_fleet_0"), 3, "tenants are left alone");
    assert_eq!(fleet.version("tenant_fleet_1"), 3);
    let summary = events(&run)
        .into_iter()
        .find(|e| e["event"] == "summary")
        .expect("a summary");
    assert_eq!(summary["report"]["migrated"], 0, "{summary}");
    assert!(
        migrated_orgs(&events(&run)).is_empty(),
        "no tenant event: {summary}"
    );
}
