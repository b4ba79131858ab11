//! Storage quotas, enforced in PostgreSQL: a tenant over its tier's quota becomes read-only
//! (writes fail with PostgreSQL's read-only error, reads work, open sessions are ended), the
//! change feed says so, warnings are recorded once per crossing, and a bigger tier makes it
//! writable again.

use std::time::Duration;

use sqlx::PgConnection;
use tenancy_core::{CreateTenant, OperationState, Tenant, UpdateTenant};
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

#[tokio::test]
async fn a_tenant_over_its_storage_quota_becomes_read_only_until_its_tier_grows() {
    let fleet = TestFleet::single().unwrap();
    let mut config = config(&fleet);
    // A fresh tenant database is about 8 MB: over a 4 MiB quota from the start.
    let mut tiny = config.tiers[&"free".parse::<tenancy_core::Tier>().unwrap()].clone();
    tiny.storage_quota = Some(bytesize::ByteSize::mib(4));
    config.tiers.insert("tiny".parse().unwrap(), tiny);
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
    // The open session was ended; a new one reads but cannot write.
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
    let (_, op) = engine
        .update_tenant(
            &tenant.org_id,
            &UpdateTenant {
                name: None,
                tier: Some("free".parse().unwrap()),
            },
            &actor(),
        )
        .await
        .unwrap();
    let op = engine
        .wait_operation(op.unwrap().id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded);
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
