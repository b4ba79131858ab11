//! `tenantctl backups` through the real binary: create (run by the command itself, no registry
//! worker), list, download as a plain archive, verify in a scratch database (and find a damaged
//! catalog), restore in place.

use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tenancy_control::{Config, Engine};
use tenancy_testkit::TestFleet;

mod common;
use common::{onboard_all, request};

fn run(fleet: &TestFleet, args: &[&str]) -> Output {
    let mut command: Command = fleet.command(env!("CARGO_BIN_EXE_tenantctl")).unwrap();
    command
        .arg("--output")
        .arg("json")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn backups_are_taken_listed_downloaded_verified_and_restored_from_the_cli() {
    let fleet = TestFleet::single().unwrap();
    let config = Config::from_toml(&fleet.toml(), |v| fleet.secret(v)).unwrap();
    let engine = Engine::start(config).await.unwrap();
    let workers = engine.run_workers();
    onboard_all(
        &engine,
        [request(5000, "Cli One"), request(5001, "Cli Two")],
    )
    .await;
    workers.shutdown().await;
    let db = engine
        .tenant(&"5000".parse().unwrap())
        .await
        .unwrap()
        .db_name;
    let psql = |sql: &str| fleet.cluster("pg-1").psql(db.as_str(), sql).unwrap();
    psql("INSERT INTO teams (name) SELECT 'team ' || i FROM generate_series(1, 30) i");

    let created: Value =
        serde_json::from_str(&ok(&run(&fleet, &["backups", "create", "5000"]))).unwrap();
    let backup = &created[0];
    assert_eq!(backup["state"], "completed");
    assert_eq!(backup["row_counts"]["public.teams"], 30);
    let id = backup["id"].as_str().unwrap().to_owned();
    ok(&run(&fleet, &["backups", "create", "5001"]));

    let listed: Value =
        serde_json::from_str(&ok(&run(&fleet, &["backups", "list", "5000"]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());

    let out = fleet.dir().join("export.dump");
    let line: Value = serde_json::from_str(&ok(&run(
        &fleet,
        &[
            "backups",
            "download",
            "5000",
            &id,
            "--out",
            out.to_str().unwrap(),
        ],
    )))
    .unwrap();
    let archive = std::fs::read(&out).unwrap();
    assert!(archive.starts_with(b"PGDMP"));
    assert_eq!(line["bytes"], archive.len());

    // Verification restores both tenants' newest backups into scratch databases.
    let verified = ok(&run(&fleet, &["backups", "verify"]));
    let lines: Vec<Value> = verified
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{verified}");
    assert!(lines.iter().all(|l| l["ok"] == true), "{verified}");
    // A catalog that no longer matches is found damaged, and the command says so.
    fleet
        .cluster("pg-1")
        .psql(
            "tenancy_registry",
            &format!(
                "UPDATE backups SET row_counts = jsonb_set(row_counts, '{{public.teams}}', '31')
                 WHERE id = '{id}'"
            ),
        )
        .unwrap();
    let damaged = run(&fleet, &["backups", "verify", "--org", "5000"]);
    assert_eq!(damaged.status.code(), Some(1));
    let line: Value = serde_json::from_slice(&damaged.stdout).unwrap();
    assert_eq!(line["ok"], false);
    assert!(
        line["found"]
            .as_str()
            .unwrap()
            .contains("public.teams has 30 rows, not 31")
    );
    assert_eq!(
        fleet
            .cluster("pg-1")
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'restoring_%'"
            )
            .unwrap(),
        "0"
    );
    fleet
        .cluster("pg-1")
        .psql(
            "tenancy_registry",
            &format!(
                "UPDATE backups SET row_counts = jsonb_set(row_counts, '{{public.teams}}', '30')
                 WHERE id = '{id}'"
            ),
        )
        .unwrap();

    // Restore in place: asks first, then brings the teams back.
    psql("DELETE FROM teams");
    let refused = run(&fleet, &["backups", "restore", "5000", &id]);
    assert_eq!(refused.status.code(), Some(2));
    ok(&run(&fleet, &["backups", "restore", "5000", &id, "--yes"]));
    assert_eq!(psql("SELECT count(*) FROM teams"), "30");

    // A copy into a new tenant (no question: nothing is replaced).
    ok(&run(
        &fleet,
        &[
            "backups", "restore", "5000", &id, "--into", "5002", "--name", "Cli Copy",
        ],
    ));
    let copy = engine
        .tenant(&"5002".parse().unwrap())
        .await
        .unwrap()
        .db_name;
    assert_eq!(
        fleet
            .cluster("pg-1")
            .psql(copy.as_str(), "SELECT count(*) FROM teams")
            .unwrap(),
        "30"
    );
}
