//! The registry at 100,000 tenants (rows made directly in the registry database, on a server
//! that exists only there): every query the request path sends uses an index. The server's own
//! `auto_explain` logs the plan of every statement while the requests run; a sequential scan of
//! `tenants`, `operations`, `audit_events` or `usage_log` in any of them fails the test.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_testkit::TestFleet;

use crate::common::*;

const TENANTS: usize = 100_000;

/// 100,000 tenants of every status and tier, 2,000 on each of 50 servers that exist in the
/// registry only (disabled, so nothing is placed there), each with a finished provisioning,
/// an audit event and a counted increment.
const SEED: &str = "
INSERT INTO database_servers (id, region, host, port, admin_user, capacity, state)
SELECT 'far-' || s, 'local', '127.0.0.1', 9, 'postgres', 5000, 'disabled'
FROM generate_series(1, 50) AS s;
INSERT INTO tenants (org_id, name, slug, db_name, role_name, server_id, region, tier, status,
                     request, kind, schema_version, suspended_by, deleted_at, purge_after)
SELECT (500000000 + i)::text, 'Scale Org ' || i, 'scale_org_' || i, 'tenant_scale_' || i,
       'tenant_scale_' || i, 'far-' || (1 + i % 50), 'local',
       (ARRAY['free', 'professional', 'business'])[1 + i % 3],
       (ARRAY['active', 'active', 'active', 'suspended', 'deleted'])[1 + i % 5],
       '{}', 'standalone', 1,
       CASE WHEN i % 5 = 3 THEN 'platform' END,
       CASE WHEN i % 5 = 4 THEN now() END,
       CASE WHEN i % 5 = 4 THEN now() + interval '30 days' END
FROM generate_series(1, 100000) AS i;
INSERT INTO operations (id, org_id, kind, state, step, created_at, finished_at)
SELECT gen_random_uuid(), (500000000 + i)::text, 'provision', 'succeeded', 'done',
       now() - i * interval '1 second', now() - i * interval '1 second'
FROM generate_series(1, 100000) AS i;
INSERT INTO audit_events (actor_subject, action, org_id, after)
SELECT 'seed-' || i % 7, (ARRAY['tenant.create', 'tenant.suspend', 'tenant.retier'])[1 + i % 3],
       (500000000 + i)::text, '{}'
FROM generate_series(1, 100000) AS i;
INSERT INTO usage_log (org_id, resource, period_start, amount, used_after, actor)
SELECT (500000000 + i)::text, 'api_calls', '1970-01-01', 1, 1, 'seed'
FROM generate_series(1, 100000) AS i;
ANALYZE;
";

/// The tables a request must never read whole.
const GUARDED: [&str; 4] = ["tenants", "operations", "audit_events", "usage_log"];

/// The metrics gauges' whole-fleet counts, which run in the background every gauge interval
/// and read every row by design (150 ms at this size on a loaded machine): not a request's.
const GAUGE_COUNTS: [&str; 2] = [
    "SELECT status, count(*) FROM tenants GROUP BY status",
    "SELECT kind, state, count(*) FROM operations GROUP BY kind, state",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_hundred_thousand_tenants_every_request_query_uses_an_index() {
    tenancy_testkit::init_test_logging();
    let fleet = TestFleet::single().unwrap();
    let cluster = fleet.cluster("pg-1");
    cluster
        .psql(
            "postgres",
            "ALTER SYSTEM SET session_preload_libraries = 'auto_explain'",
        )
        .unwrap();
    cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    let app = TestApp::start_on(fleet, dev_settings(), |_| {}).await;
    // One real tenant among the rows, for the paths that need its database and credentials.
    let one = "600000001";
    let (status, body) = app
        .admin_call(
            Method::POST,
            "/v1/tenants?wait=30s",
            Some(json!({"org_id": one, "name": "The Real One"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let cluster = app.fleet().cluster("pg-1");
    cluster.psql("tenancy_registry", SEED).unwrap();
    let explain = |on: bool| {
        let duration = if on { 0 } else { -1 };
        cluster
            .psql(
                "postgres",
                &format!("ALTER SYSTEM SET auto_explain.log_min_duration = {duration}"),
            )
            .unwrap();
        cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    };
    explain(true);
    // Every backend has read the new setting once it answers after the reload.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log_start = cluster.server_log().len();

    let last_page_cursor = format!("{}", 500000000 + TENANTS - 60);
    let mut paths = vec![
        format!("/v1/tenants/{one}"),
        format!("/v1/tenants/{one}/connection"),
        format!("/v1/tenants/{one}/operations"),
        format!("/v1/tenants/{one}/quotas"),
        format!("/v1/tenants/{one}/usage-log"),
        format!("/v1/tenants/{one}/settings"),
        format!("/v1/tenants/{one}/clients"),
        "/v1/changes?after=99990".to_owned(),
        "/v1/servers".to_owned(),
        "/v1/audit".to_owned(),
        format!("/v1/audit?org_id={one}"),
        "/v1/audit?action=tenant.suspend".to_owned(),
        "/v1/audit?actor=seed-3".to_owned(),
        format!("/v1/tenants?cursor={last_page_cursor}"),
        "/v1/tenants?search=Scale%20Org%2099999".to_owned(),
        format!("/v1/tenants?search={one}"),
    ];
    for filter in [
        "status=suspended",
        "status=deleted",
        "tier=business",
        "kind=standalone",
        "server_id=far-7",
        "region=local",
    ] {
        paths.push(format!("/v1/tenants?{filter}"));
        paths.push(format!("/v1/tenants?{filter}&cursor={last_page_cursor}"));
    }
    // Past the plan cache's first five custom plans, a prepared statement may switch to a
    // generic plan: ask each list more than that.
    for _ in 0..7 {
        for path in &paths {
            let (status, body) = app.admin_call(Method::GET, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
    }
    for i in 0..7 {
        let (status, body) = app
            .admin_call(
                Method::POST,
                &format!("/v1/tenants/{one}/usage/api_calls"),
                Some(json!({"amount": 1, "idempotency_key": format!("scale-{i}")})),
            )
            .await;
        assert!(status.is_success(), "usage increment: {status} {body}");
    }
    // An onboarding places its tenant by every server's load.
    let (status, body) = app
        .admin_call(
            Method::POST,
            "/v1/tenants?wait=30s",
            Some(json!({"org_id": "600000002", "name": "The Second One"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    explain(false);

    let log = cluster.server_log()[log_start..].to_owned();
    let plans = plans(&log);
    assert!(
        plans
            .iter()
            .any(|p| p.contains("tenants_pkey") && p.contains("Query Text")),
        "auto_explain logged the requests' plans ({} plans)",
        plans.len()
    );
    // Each offending statement once, with the first plan that read a whole table.
    let mut scans: Vec<(&str, &str)> = Vec::new();
    for plan in &plans {
        let scanned = GUARDED
            .iter()
            .any(|table| plan.contains(&format!("Seq Scan on {table} ")));
        let query = plan
            .lines()
            .find_map(|l| l.trim().strip_prefix("Query Text: "))
            .unwrap_or_default();
        if scanned && !GAUGE_COUNTS.contains(&query) && !scans.iter().any(|(q, _)| *q == query) {
            scans.push((query, plan));
        }
    }
    assert!(
        scans.is_empty(),
        "{} statements read a whole table:\n{}",
        scans.len(),
        scans
            .iter()
            .map(|(_, plan)| *plan)
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
}

/// The plans `auto_explain` logged: each log entry (a line with the log's prefix and the lines
/// after it that start with white space) whose first line says `plan:`.
fn plans(log: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for line in log.lines() {
        match entries.last_mut() {
            Some(entry) if line.starts_with([' ', '\t']) => {
                entry.push('\n');
                entry.push_str(line);
            }
            _ => entries.push(line.to_owned()),
        }
    }
    entries.retain(|e| e.lines().next().is_some_and(|l| l.contains("plan:")));
    entries
}
