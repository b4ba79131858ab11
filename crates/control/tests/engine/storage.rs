//! Storage quotas, enforced in PostgreSQL: a tenant over its tier's quota becomes read-only
//! (writes fail with PostgreSQL's read-only error, reads work, open sessions are refused at
//! their next write, and nothing the tenant's role may do undoes it), the
//! change feed says so, warnings are recorded once per crossing, and a bigger tier makes it
//! writable again.

use std::time::Duration;

use sqlx::PgConnection;
use tenancy_core::{CreateTenant, Tenant};
use tenancy_testkit::TestFleet;

use crate::helpers::*;

async fn write(conn: &mut PgConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, '1')")
        .bind(key)
        .execute(conn)
        .await
        .map(drop)
}

async fn feed_says_read_only(engine: &tenancy_control::Engine, tenant: &Tenant) -> bool {
    let feed = engine.changes(0, 1000, Duration::ZERO).await.unwrap();
    feed.changes
        .iter()
        .rfind(|c| c.org_id == tenant.org_id)
        .unwrap()
        .read_only
}

/// Adds the tier `tiny`: `free` with a 4 MiB storage quota, which a fresh tenant database (about
/// 8 MB) is over from the start.
fn with_tiny_tier(config: &mut tenancy_control::Config) {
    add_tier(config, "tiny", |tiny| {
        tiny.storage_quota = Some(bytesize::ByteSize::mib(4));
    });
}

#[tokio::test]
async fn a_tenant_over_its_storage_quota_becomes_read_only_until_its_tier_grows() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    with_tiny_tier(&mut config);
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let mut create: CreateTenant = request("7301", "Storage Hog");
    create.tier = Some("tiny".parse().unwrap());
    let tenant = onboard(&engine, create).await;
    let cluster = fleet.cluster("pg-1");

    let mut open = connect_own(&engine, cluster, &tenant).await.unwrap();
    write(&mut open, "before").await.unwrap();
    assert!(!feed_says_read_only(&engine, &tenant).await);

    let round = engine.sample_usage().await.unwrap();
    assert_eq!(round.made_read_only, std::slice::from_ref(&tenant.org_id));
    assert_eq!(
        round.warnings,
        [(tenant.org_id.clone(), 80), (tenant.org_id.clone(), 95)]
    );
    // The open session is refused; a new one reads but cannot write.
    assert!(write(&mut open, "after").await.is_err());
    let mut conn = connect_own(&engine, cluster, &tenant).await.unwrap();
    let err = write(&mut conn, "after").await.unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("25006"), "{err}");
    let read: i64 = sqlx::query_scalar("SELECT count(*) FROM settings")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(read, 1);
    let now = engine.tenant(&tenant.org_id).await.unwrap();
    assert!(now.read_only);
    assert!(
        now.read_only_reason
            .unwrap()
            .contains("storage quota exceeded")
    );
    assert!(feed_says_read_only(&engine, &tenant).await);

    // Another round changes nothing and warns no more.
    let again = engine.sample_usage().await.unwrap();
    assert!(
        again.made_read_only.is_empty() && again.warnings.is_empty(),
        "{again:?}"
    );

    // A tier with room: writable again at the next round.
    retier(&engine, &tenant.org_id, "free").await;
    let round = engine.sample_usage().await.unwrap();
    assert_eq!(round.made_writable, std::slice::from_ref(&tenant.org_id));
    let mut conn = connect_own(&engine, cluster, &tenant).await.unwrap();
    write(&mut conn, "writable").await.unwrap();
    assert!(!feed_says_read_only(&engine, &tenant).await);

    let usage = engine.usage(&tenant.org_id, None).await.unwrap();
    assert_eq!(usage.history.len(), 3);
    assert_eq!(usage.storage_quota_bytes, Some(1 << 30));
    assert!(!usage.read_only);
    let warnings: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_events WHERE action = 'tenant.storage_warning' AND org_id = $1",
    )
    .bind(tenant.org_id.as_str())
    .fetch_one(&mut registry(&fleet).await)
    .await
    .unwrap();
    assert_eq!(warnings, 2, "once per crossing");
}

/// The SQLSTATE of a failed statement.
fn sqlstate(result: Result<impl Sized, sqlx::Error>) -> Option<String> {
    result.err().and_then(|e| {
        e.as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned())
    })
}

/// Read-only is held by privileges, not by a setting the tenant may change (security review 2,
/// N5): as the tenant's own role, no `SET`, `BEGIN READ WRITE`, role setting, temporary table
/// or large object writes anything; the reconciler finds a role setting the tenant made and
/// converges it; and the engine's own work (a converge, a fleet migration) goes on in the
/// read-only database, whose new tables the next sampling round closes too.
#[tokio::test]
async fn a_read_only_tenant_cannot_write_by_any_means_and_the_engine_still_can() {
    use tenancy_control::{FindingKind, Repair};

    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    with_tiny_tier(&mut config);
    config.engine.template_version = Some(4);
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let mut create: CreateTenant = request("7401", "Escape Artist");
    create.tier = Some("tiny".parse().unwrap());
    let tenant = onboard(&engine, create).await;
    let cluster = fleet.cluster("pg-1");
    let db = tenant.db_name.as_str();
    let round = engine.sample_usage().await.unwrap();
    assert_eq!(round.made_read_only, std::slice::from_ref(&tenant.org_id));

    let mut conn = connect_own(&engine, cluster, &tenant).await.unwrap();
    sqlx::raw_sql("SET default_transaction_read_only = off")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        sqlstate(write(&mut conn, "set").await).as_deref(),
        Some("42501")
    );
    let escapes = [
        "BEGIN READ WRITE; INSERT INTO settings (key, value) VALUES ('rw', '1'); COMMIT",
        "UPDATE settings SET value = '2'",
        "DELETE FROM settings",
        "TRUNCATE settings",
        "CREATE TEMPORARY TABLE scratch (x int)",
        "SELECT lo_from_bytea(0, 'more bytes')",
        "SELECT lo_create(0)",
    ];
    for sql in escapes {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
        let state = sqlstate(sqlx::raw_sql(sql).execute(&mut conn).await);
        assert_eq!(state.as_deref(), Some("42501"), "{sql}");
    }
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
    // The role's own default, for its later sessions: allowed, and useless.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER ROLE CURRENT_USER IN DATABASE {db} SET default_transaction_read_only = off;
         ALTER ROLE CURRENT_USER SET statement_timeout = 0"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let mut later = connect_own(&engine, cluster, &tenant).await.unwrap();
    assert_eq!(
        sqlstate(write(&mut later, "later").await).as_deref(),
        Some("42501")
    );
    drop((conn, later));

    // The reconciler sees the settings and converges them.
    let report = engine.reconcile(Repair::Nothing).await.unwrap();
    assert!(
        report.iter().any(|f| f.kind == FindingKind::RoleDrift
            && f.org_id.as_ref() == Some(&tenant.org_id)
            && f.detail.contains("session settings")),
        "{report:?}"
    );
    engine.reconcile(Repair::Tenants).await.unwrap();
    let converge = engine.tenant_operations(&tenant.org_id, 1).await.unwrap();
    assert_eq!(converge[0].kind, tenancy_core::OperationKind::Converge);
    let converge = engine
        .wait_operation(converge[0].id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        converge.state,
        tenancy_core::OperationState::Succeeded,
        "{converge:?}"
    );
    assert!(engine.reconcile(Repair::Nothing).await.unwrap().is_empty());
    let settings = cluster
        .psql(
            "postgres",
            &format!(
                "SELECT coalesce(d.datname, '*') || ':' || array_to_string(s.setconfig, ',')
                 FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase
                 WHERE s.setrole = '{}'::regrole ORDER BY 1",
                tenant.role_name()
            ),
        )
        .unwrap();
    assert!(
        settings.contains(&format!("{db}:default_transaction_read_only=on"))
            && !settings.contains("statement_timeout=0"),
        "{settings}"
    );
    let mut conn = connect_own(&engine, cluster, &tenant).await.unwrap();
    assert!(write(&mut conn, "after converge").await.is_err());

    // The engine's own sessions work in the read-only database: a fleet migration.
    let to_v5 = tenancy_control::fleet::MigrateOptions {
        target: Some(5),
        ..Default::default()
    };
    engine
        .migrate_fleet(&to_v5, std::sync::Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(
        engine.tenant(&tenant.org_id).await.unwrap().schema_version,
        Some(5)
    );
    engine.sample_usage().await.unwrap();
    let writable = cluster
        .psql(
            db,
            &format!(
                "SELECT count(*) FROM information_schema.table_privileges
                 WHERE grantee = '{}' AND privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')",
                tenant.role_name()
            ),
        )
        .unwrap();
    assert_eq!(writable, "0", "the new version's tables are closed too");

    // A tier with room: every way of writing back.
    retier(&engine, &tenant.org_id, "free").await;
    let round = engine.sample_usage().await.unwrap();
    assert_eq!(round.made_writable, std::slice::from_ref(&tenant.org_id));
    let mut conn = connect_own(&engine, cluster, &tenant).await.unwrap();
    write(&mut conn, "writable").await.unwrap();
    // (Temporary tables stay the tier's choice: `free` has none.)
    sqlx::raw_sql("SELECT lo_from_bytea(0, 'back')")
        .execute(&mut conn)
        .await
        .unwrap();
}

/// With a webhook configured, each warning is also posted, signed; a failed delivery is tried
/// again at the next round, and a delivered one never again.
#[tokio::test]
async fn storage_warnings_reach_the_webhook_signed_and_a_failed_delivery_is_retried() {
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};
    use hmac::{Hmac, Mac};

    const SECRET: &str = "webhook-signing-secret-for-tests";
    let received: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let received = received.clone();
            move |headers: HeaderMap, body: String| {
                let received = received.clone();
                async move {
                    let mut received = received.lock().unwrap();
                    received.push((headers, body));
                    // The very first delivery fails: it must come again.
                    if received.len() == 1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    with_tiny_tier(&mut config);
    config.usage.warning_webhook_url = Some(url);
    config.usage.warning_webhook_secret = Some(SECRET.into());
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let mut create: CreateTenant = request("7401", "Watched");
    create.tier = Some("tiny".parse().unwrap());
    let tenant = onboard(&engine, create).await;

    let first = engine.sample_usage().await.unwrap();
    assert_eq!(first.warnings.len(), 2);
    assert_eq!(first.webhooks_delivered, 1, "one of two failed");
    let second = engine.sample_usage().await.unwrap();
    assert_eq!(
        second.webhooks_delivered, 0,
        "a failed delivery waits its backoff"
    );
    sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = now()")
        .execute(&mut registry(&fleet).await)
        .await
        .unwrap();
    let third = engine.sample_usage().await.unwrap();
    assert_eq!(third.webhooks_delivered, 1, "the failed one, again");
    assert_eq!(engine.sample_usage().await.unwrap().webhooks_delivered, 0);

    let received = received.lock().unwrap();
    assert_eq!(received.len(), 3);
    let mut levels = Vec::new();
    for (headers, body) in received.iter() {
        let signature = headers["x-tenancy-signature"].to_str().unwrap();
        let (t, v1) = signature
            .strip_prefix("t=")
            .and_then(|s| s.split_once(",v1="))
            .unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1, expected, "signed with the secret");
        let event: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["event"], "tenant.storage_warning");
        assert_eq!(event["org_id"], tenant.org_id.as_str());
        levels.push((
            headers["x-tenancy-delivery"].to_str().unwrap().to_owned(),
            event["level"].as_i64().unwrap(),
        ));
    }
    // The first delivery failed and came again with the same id.
    assert_eq!(levels[0], levels[2]);
    let mut distinct: Vec<i64> = levels.iter().map(|(_, level)| *level).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct, [80, 95]);
}

/// One tenant whose enforcement fails (its role gone from the server, say) does not cost the
/// others of the round theirs (security review N13): it is tried again next round.
#[tokio::test]
async fn one_tenant_failing_enforcement_does_not_stop_the_round() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    with_tiny_tier(&mut config);
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let mut tenants = Vec::new();
    for (org, name) in [("7401", "Broken Hog"), ("7402", "Plain Hog")] {
        let mut create: CreateTenant = request(org, name);
        create.tier = Some("tiny".parse().unwrap());
        tenants.push(onboard(&engine, create).await);
    }
    // The first (in org_id order) has lost its role on the server (renamed by hand): its
    // enforcement fails.
    fleet
        .cluster("pg-1")
        .psql(
            "postgres",
            "ALTER ROLE tenant_broken_hog RENAME TO broken_hog_elsewhere",
        )
        .unwrap();

    let round = engine.sample_usage().await.unwrap();
    assert_eq!(round.made_read_only, [tenants[1].org_id.clone()]);
    assert!(engine.tenant(&tenants[1].org_id).await.unwrap().read_only);
    assert!(!engine.tenant(&tenants[0].org_id).await.unwrap().read_only);
}

/// Callers polling `/usage` and `/health` use the probe connections; the sampler does not, so
/// they never make it skip a server and its storage quotas (first security review, M6). Here
/// every probe connection is stuck behind a lock on `pg_database` held for three seconds: the
/// sampler waits for the lock on its own connection and enforces the quota.
#[tokio::test]
async fn probes_held_by_callers_never_make_the_sampler_skip_a_server() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    with_tiny_tier(&mut config);
    let engine = tenancy_control::Engine::start(config).await.unwrap();
    std::mem::forget(engine.run_workers());
    let mut create: CreateTenant = request("7311", "Probed Hog");
    create.tier = Some("tiny".parse().unwrap());
    let tenant = onboard(&engine, create).await;
    // The sampler's connection exists already, as in a registry that has been running.
    engine.sample_usage().await.unwrap();
    sqlx::query("UPDATE tenants SET read_only = false WHERE org_id = $1")
        .bind(tenant.org_id.as_str())
        .execute(&mut registry(&fleet).await)
        .await
        .unwrap();

    let cluster = fleet.cluster("pg-1");
    let mut locker = <PgConnection as sqlx::Connection>::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE pg_database IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let (engine, org_id) = (engine.clone(), tenant.org_id.clone());
            tokio::spawn(async move { engine.usage(&org_id, None).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut locker)
            .await
            .unwrap();
    });
    let round = engine.sample_usage().await.unwrap();
    assert_eq!(round.servers, 1, "the server was sampled: {round:?}");
    assert_eq!(round.made_read_only, std::slice::from_ref(&tenant.org_id));
    release.await.unwrap();
    for poller in pollers {
        let _ = poller.await.unwrap();
    }
}
