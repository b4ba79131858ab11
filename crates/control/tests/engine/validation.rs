use tenancy_core::CreateTenant;

use crate::helpers::*;
use tenancy_testkit::TestFleet;

#[tokio::test]
async fn hostile_input_is_refused_and_touches_nothing() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let long = "x".repeat(200);
    let hostile_bodies = [
        r#"{"org_id": "1; DROP DATABASE postgres", "name": "A"}"#.to_owned(),
        r#"{"org_id": "1", "name": "A", "slug": "a\"; DROP ROLE postgres; --"}"#.to_owned(),
        r#"{"org_id": "1", "name": "A", "slug": "x'; DROP"}"#.to_owned(),
        r#"{"org_id": "1", "name": "A", "slug": "ünïcode"}"#.to_owned(),
        format!(r#"{{"org_id": "1", "name": "A", "slug": "{long}"}}"#),
        format!(r#"{{"org_id": "{long}", "name": "A"}}"#),
        r#"{"org_id": "", "name": "A"}"#.to_owned(),
        r#"{"org_id": "1", "name": ""}"#.to_owned(),
        format!(r#"{{"org_id": "1", "name": "{long}"}}"#),
        r#"{"org_id": "1", "name": "A", "slug": ""}"#.to_owned(),
        r#"{"org_id": "1", "name": "A", "slug": "template"}"#.to_owned(),
        r#"{"org_id": "1", "name": "A", "region": "Bad Region"}"#.to_owned(),
        r#"{"org_id": "1", "name": "A", "tier": "Platinum!"}"#.to_owned(),
        r#"{"org_id": "1", "name": "A", "admin_email": "not an email"}"#.to_owned(),
        r#"{"org_id": "1", "name": "A", "admin_email": "a@b"}"#.to_owned(),
        r#"{"org_id": "1", "name": "A", "admin_email": "a b@c.de"}"#.to_owned(),
    ];
    for body in &hostile_bodies {
        assert!(
            serde_json::from_str::<CreateTenant>(body).is_err(),
            "accepted: {body}"
        );
    }
    // Input that parses but names what does not exist: a conflict, not a malformed request.
    let mut unknown_parent = request("6002", "Fine");
    unknown_parent.parent_org_id = Some("999".parse().unwrap());
    let refused = engine.onboard(unknown_parent, &actor()).await.unwrap_err();
    assert_eq!(refused.code(), tenancy_core::ErrorCode::UnknownParent);
    let mut unknown_region = request("6004", "Fine");
    unknown_region.region = Some("mars-1".parse().unwrap());
    let refused = engine.onboard(unknown_region, &actor()).await.unwrap_err();
    assert_eq!(refused.code(), tenancy_core::ErrorCode::UnknownRegion);

    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
        .fetch_one(&mut registry(&fleet).await)
        .await
        .unwrap();
    assert_eq!(tenants, 0);
    assert!(fleet.tenant_databases("pg-1").is_empty());
    assert!(fleet.tenant_roles("pg-1").is_empty());

    // A name full of SQL yields a safe, derived database name.
    let t = onboard(&engine, request("6003", "Robert'); DROP TABLE tenants;--")).await;
    assert_eq!(t.db_name.as_str(), "tenant_robert_drop_table_tenants");
    assert_eq!(t.name.as_str(), "Robert'); DROP TABLE tenants;--");

    // A name with nothing to make a slug of gives one from the organization's id.
    let t = onboard(&engine, request("Ab-6005", "!!! ???")).await;
    assert_eq!(t.slug.as_str(), "org_ab_6005");
}
