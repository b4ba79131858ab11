//! Draining and rebalancing through the real binary: `servers drain --move` empties a server,
//! `rebalance` evens out a region. Every tenant stays reachable where the registry says it is.

use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tenancy_control::{Config, Engine};
use tenancy_testkit::TestFleet;

mod common;
use common::{onboard_all, request};

fn fleet(servers: &[&str]) -> TestFleet {
    servers
        .iter()
        .fold(TestFleet::builder(), |b, id| b.server(id, "local"))
        .build()
        .unwrap()
}

/// Onboards `n` tenants, all on `only` (the other servers have no capacity meanwhile), then
/// gives every server room again.
async fn onboard_onto(fleet: &TestFleet, only: &str, n: usize) -> Engine {
    let mut config = Config::from_toml(&fleet.toml(), |v| fleet.secret(v)).unwrap();
    for server in &mut config.servers {
        if server.id.as_str() != only {
            server.capacity = 0;
        }
    }
    let engine = Engine::start(config).await.unwrap();
    let workers = engine.run_workers();
    onboard_all(
        &engine,
        (0..n).map(|i| request(3000 + i, &format!("Mover {i}"))),
    )
    .await;
    workers.shutdown().await;
    fleet.servers[0]
        .cluster
        .psql(
            "tenancy_registry",
            "UPDATE database_servers SET capacity = 100",
        )
        .unwrap();
    engine
}

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

/// Live tenants per server, as the registry says, and each database where it says.
async fn spread(engine: &Engine, fleet: &TestFleet) -> Vec<(String, usize)> {
    let mut counts = Vec::new();
    for server in &fleet.servers {
        let filter = tenancy_control::TenantFilter {
            selector: tenancy_core::TenantSelector {
                server_id: Some(server.id.parse().unwrap()),
                ..Default::default()
            },
            limit: 1000,
            ..Default::default()
        };
        let tenants = engine.list_tenants(&filter).await.unwrap();
        let databases = fleet.tenant_databases(&server.id);
        for t in &tenants {
            assert!(
                databases.contains(&t.db_name.to_string()),
                "{} on {}",
                t.db_name,
                server.id
            );
        }
        counts.push((server.id.clone(), tenants.len()));
    }
    counts
}

/// Four moves at a time choose their targets at once: they still spread evenly.
#[tokio::test]
async fn drain_with_move_empties_a_server_of_its_tenants() {
    let fleet = fleet(&["pg-0", "pg-1", "pg-2"]);
    let engine = onboard_onto(&fleet, "pg-0", 20).await;
    let out = run(
        &fleet,
        &[
            "servers",
            "drain",
            "pg-0",
            "--move",
            "--concurrency",
            "4",
            "--yes",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["moved"].as_array().unwrap().len(), 20, "{report}");
    assert_eq!(report["failed"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(
        spread(&engine, &fleet).await,
        [
            ("pg-0".to_owned(), 0),
            ("pg-1".to_owned(), 10),
            ("pg-2".to_owned(), 10)
        ]
    );
    // Nothing of the tenants is left open on the drained server.
    assert!(fleet.tenant_databases("pg-0").is_empty());
    assert!(fleet.tenant_roles("pg-0").is_empty());
    let server = engine.server(&"pg-0".parse().unwrap()).await.unwrap();
    assert_eq!(server.state, tenancy_core::ServerState::Draining);
}

#[tokio::test]
async fn rebalance_evens_out_three_servers() {
    let fleet = fleet(&["pg-0", "pg-1", "pg-2"]);
    let engine = onboard_onto(&fleet, "pg-0", 12).await;

    let dry = run(&fleet, &["rebalance", "--region", "local", "--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan.as_array().unwrap().len(), 8, "{plan}");
    assert_eq!(
        spread(&engine, &fleet).await[0].1,
        12,
        "a dry run moves nothing"
    );
    // By size: the databases the servers report, each weighed in bytes.
    let by_size = run(&fleet, &["rebalance", "--by", "size", "--dry-run"]);
    assert!(
        by_size.status.success(),
        "{}",
        String::from_utf8_lossy(&by_size.stderr)
    );
    let plan: Value = serde_json::from_slice(&by_size.stdout).unwrap();
    let moves = plan.as_array().unwrap();
    assert!(moves.len() >= 6, "{plan}");
    assert!(
        moves
            .iter()
            .all(|m| m["from"] == "pg-0" && m["bytes"].as_i64().unwrap() > 1_000_000),
        "{plan}"
    );

    let out = run(
        &fleet,
        &[
            "rebalance",
            "--region",
            "local",
            "--concurrency",
            "3",
            "--yes",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        spread(&engine, &fleet).await,
        [
            ("pg-0".to_owned(), 4),
            ("pg-1".to_owned(), 4),
            ("pg-2".to_owned(), 4)
        ]
    );
    // Balanced now: nothing more to do.
    let again = run(&fleet, &["rebalance", "--region", "local", "--dry-run"]);
    let plan: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(plan.as_array().unwrap().is_empty(), "{plan}");
}
