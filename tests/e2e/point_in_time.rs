//! Point-in-time restore through the API while the WAL keeper changes hands: the registry that
//! keeps pg-1's archive is killed (SIGKILL, its `pg_receivewal` left running) twice between
//! two writes, and the replica that takes over archives from where the catalog ends, with no
//! segment skipped or stored twice; the restore to a moment between the writes holds the
//! first and not the second.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::Deployment;
use tenancy_testkit::eventually;

fn config(deployment: &Deployment, scratch: &std::path::Path) -> std::path::PathBuf {
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fleet = deployment.fleet.toml().replacen(
        "capacity = 1000\n",
        "capacity = 1000\nwal_archive = { base_backup_every = \"1h\", keep = \"1d\" }\n",
        1,
    );
    let path = deployment.fleet.dir().join("archived.toml");
    std::fs::write(
        &path,
        format!(
            "{fleet}\n[wal_archive]\nmark_every = \"1s\"\nspool_dir = \"{}\"\nscratch_dir = \"{}\"\n",
            deployment.fleet.dir().join("wal-spool").display(),
            scratch.display()
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn the_keeper_changes_hands_without_a_gap_and_a_tenant_comes_back_to_a_moment() {
    let deployment = Deployment::new().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let file = config(&deployment, scratch.path());
    let env = [("TENANCY_CONFIG", file.to_str().unwrap())];
    let mut first = deployment.start_with_env(&env).await.unwrap();
    let created = first
        .call(
            Method::POST,
            "/v1/tenants?wait=30s",
            Some(json!({"org_id": "7501", "name": "Point in time"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let db = created.body["db_name"].as_str().unwrap().to_owned();
    let cluster = deployment.fleet.cluster("pg-1");
    let sql = |db: &str, query: &str| cluster.psql(db, query).unwrap();
    sql(&db, "CREATE TABLE notes (body text)");
    eventually(Duration::from_secs(60), "the window opens", || async {
        let answer = first
            .call(Method::GET, "/v1/tenants/7501/restore-window", None)
            .await;
        (answer.status == StatusCode::OK && !answer.body["earliest"].is_null()).then_some(())
    })
    .await;

    sql(&db, "INSERT INTO notes VALUES ('first')");
    std::thread::sleep(Duration::from_millis(500));
    let moment = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(500));

    // The keeper dies twice; each time another replica takes over. WAL keeps coming.
    let mut second = deployment.start_with_env(&env).await.unwrap();
    first.kill_hard();
    for _ in 0..3 {
        // A commit first: a switch with nothing written since the last one switches nothing.
        sql("postgres", "SELECT pg_current_xact_id()");
        sql("postgres", "SELECT pg_switch_wal()");
        std::thread::sleep(Duration::from_millis(700));
    }
    let gauges_env = [env[0], ("TENANCY_METRICS_INTERVAL", "1s")];
    let third = deployment.start_with_env(&gauges_env).await.unwrap();
    second.kill_hard();
    sql(&db, "INSERT INTO notes VALUES ('second')");
    for _ in 0..3 {
        // A commit first: a switch with nothing written since the last one switches nothing.
        sql("postgres", "SELECT pg_current_xact_id()");
        sql("postgres", "SELECT pg_switch_wal()");
        std::thread::sleep(Duration::from_millis(700));
    }

    let asked = third
        .call(
            Method::POST,
            "/v1/tenants/7501/restore",
            Some(json!({"point_in_time": moment.to_rfc3339()})),
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{asked:?}");
    let op = asked.body["id"].as_str().unwrap().to_owned();
    let done = third
        .wait_for(&format!("/v1/operations/{op}"), "state", "succeeded")
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(sql(&db, "SELECT string_agg(body, ',') FROM notes"), "first");

    // Every segment from the first archived to the last, each once.
    let segments = sql(
        "tenancy_registry",
        "SELECT count(*) || ',' || (max(segno) - min(segno) + 1) || ',' || count(DISTINCT segno)
         FROM wal_segments WHERE server_id = 'pg-1'",
    );
    let counts: Vec<i64> = segments.split(',').map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts[0], counts[1], "a segment skipped: {segments}");
    assert_eq!(counts[0], counts[2], "{segments}");
    assert!(counts[0] >= 4, "{segments}");
    // One keeper streams now: the killed ones' pg_receivewal were ended.
    assert_eq!(
        sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'tenancy-wal-keeper'"
        ),
        "1"
    );
    // A moment before the window: 422 with the window.
    let refused = third
        .call(
            Method::POST,
            "/v1/tenants/7501/restore",
            Some(json!({"point_in_time": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{refused:?}"
    );
    assert_eq!(refused.body["code"], "outside_restore_window");
    assert!(refused.body["earliest"].is_string(), "{refused:?}");

    // Any replica shows the archive's gauges, read from the catalog and the server.
    eventually(Duration::from_secs(20), "the archive's gauges", || async {
        let metrics = reqwest::get(format!("{}/metrics", third.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (metrics.contains("tenancy_wal_archive_lag_bytes{server=\"pg-1\"}")
            && metrics.contains("tenancy_wal_last_base_backup_timestamp_seconds{server=\"pg-1\"}"))
        .then_some(())
    })
    .await;
}
