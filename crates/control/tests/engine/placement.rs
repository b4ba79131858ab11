use std::collections::BTreeMap;

use tenancy_core::{ErrorCode, ServerState, TenantStatus};

use crate::helpers::*;
use tenancy_testkit::TestFleet;

#[tokio::test]
async fn tenants_spread_over_the_servers_of_a_region_and_never_land_on_a_draining_one() {
    let fleet = TestFleet::builder()
        .server("pg-a", "eu-west")
        .server("pg-b", "eu-west")
        .server("pg-c", "us-east")
        .build()
        .unwrap();
    let engine = engine_with_workers(&fleet).await;

    let requests = (0..10).map(|i| {
        let mut req = request(&format!("5{i:03}"), &format!("Spread {i}"));
        req.region = Some("eu-west".parse().unwrap());
        onboard(&engine, req)
    });
    let tenants = futures::future::join_all(requests).await;
    let mut per_server = BTreeMap::new();
    for t in &tenants {
        assert_eq!(t.status, TenantStatus::Active);
        *per_server
            .entry(t.server_id.clone().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_server,
        BTreeMap::from([("pg-a".to_owned(), 5), ("pg-b".to_owned(), 5)])
    );
    assert_eq!(fleet.tenant_databases("pg-a").len(), 5);
    assert!(
        fleet.tenant_databases("pg-c").is_empty(),
        "other region untouched"
    );

    engine
        .set_server_state(&"pg-b".parse().unwrap(), ServerState::Draining, &actor())
        .await
        .unwrap();
    for i in 10..16 {
        let mut req = request(&format!("5{i:03}"), &format!("Spread {i}"));
        req.region = Some("eu-west".parse().unwrap());
        let t = onboard(&engine, req).await;
        assert_eq!(t.server_id.unwrap().as_str(), "pg-a");
    }
    assert_eq!(
        fleet.tenant_databases("pg-b").len(),
        5,
        "draining server took nothing new"
    );

    let mut req = request("5999", "Nowhere");
    req.region = Some("ap-south".parse().unwrap());
    let err = engine.onboard(req, &actor()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::UnknownRegion, "{err}");
}
