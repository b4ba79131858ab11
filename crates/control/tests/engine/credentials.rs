use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};
use tenancy_control::Engine;
use tenancy_core::{OperationState, Tenant};
use tenancy_testkit::{MASTER_KEY, PgCluster, TestFleet};

use crate::helpers::*;

async fn connect_with(
    cluster: &PgCluster,
    tenant: &Tenant,
    password: &str,
) -> Result<(), sqlx::Error> {
    let url = cluster.url_as(
        tenant.role_name().as_str(),
        password,
        tenant.db_name.as_str(),
    );
    PgConnection::connect(&url).await?.close().await
}

async fn password(engine: &Engine, tenant: &Tenant) -> String {
    engine
        .tenant_password(&tenant.org_id)
        .await
        .unwrap()
        .expose_secret()
        .to_owned()
}

/// Rotation gives the role a new password that the registry hands out from then on (and tells
/// routers through the change feed); the old one stops working.
#[tokio::test]
async fn rotating_credentials_replaces_the_password_everywhere() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let tenant = onboard(&engine, request("9101", "Rotated")).await;
    let cluster = fleet.cluster("pg-1");
    let old = password(&engine, &tenant).await;
    connect_with(cluster, &tenant, &old).await.unwrap();
    let seq = engine
        .changes(0, 1000, Duration::ZERO)
        .await
        .unwrap()
        .last_seq;

    let op = engine
        .rotate_credentials(&tenant.org_id, &actor())
        .await
        .unwrap();
    let op = engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let new = password(&engine, &tenant).await;
    assert_ne!(old, new);
    connect_with(cluster, &tenant, &new).await.unwrap();
    let err = connect_with(cluster, &tenant, &old).await.unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    let info = engine.connection_info(&tenant.org_id).await.unwrap();
    assert_eq!(info.password.as_deref(), Some(new.as_str()));
    let feed = engine.changes(seq, 1000, Duration::ZERO).await.unwrap();
    assert!(
        feed.changes.iter().any(|c| c.org_id == tenant.org_id),
        "routers are told"
    );
}

/// A purged organization that is onboarded again never gets an old password back.
#[tokio::test]
async fn a_purged_tenant_onboarded_again_gets_a_new_password() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let first = onboard(&engine, request("9201", "Reborn")).await;
    let before = password(&engine, &first).await;
    for op in [engine
        .delete(&first.org_id, tenancy_control::Cascade::Refuse, &actor())
        .await
        .unwrap()]
    {
        engine
            .wait_operation(op.id, Duration::from_secs(30))
            .await
            .unwrap();
    }
    let op = engine.purge(&first.org_id, &actor()).await.unwrap();
    engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    let again = onboard(&engine, request("9201", "Reborn")).await;
    assert_eq!(again.role_name(), first.role_name());
    let after = password(&engine, &again).await;
    assert_ne!(before, after);
    let err = connect_with(fleet.cluster("pg-1"), &again, &before)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
}

/// The master key itself rotates: with the old key as the previous one, every tenant keeps
/// working; `rekey` moves them all to the new key, after which the old key can go.
#[tokio::test]
async fn the_master_key_rotates_with_no_tenant_locked_out() {
    let fleet = TestFleet::single().unwrap();
    let old_engine = engine(&fleet).await;
    // Every replica runs with the new key before the re-keying: stop the old one.
    let old_workers = old_engine.run_workers();
    let a = onboard(&old_engine, request("9301", "Keyed A")).await;
    let b = onboard(&old_engine, request("9302", "Keyed B")).await;
    // A deleted tenant moves to the new key too (security review 2, N20): in the registry.
    let c = onboard(&old_engine, request("9303", "Keyed C")).await;
    delete_and_wait(&old_engine, &c.org_id).await;
    old_workers.shutdown().await;
    let cluster = fleet.cluster("pg-1");

    let new_key = "a-brand-new-master-key-0123456789abcdefghij";
    let mut rotating = config(&fleet);
    rotating.engine.master_key = Some(SecretString::from(new_key));
    rotating.engine.previous_master_key = Some(SecretString::from(MASTER_KEY));
    let engine = Engine::start(rotating).await.unwrap();
    for tenant in [&a, &b] {
        connect_with(cluster, tenant, &password(&engine, tenant).await)
            .await
            .unwrap();
    }
    let workers = engine.run_workers();
    let rekeyed = engine.rekey(&actor()).await.unwrap();
    assert_eq!(
        (
            rekeyed.queued.len(),
            rekeyed.in_registry.clone(),
            rekeyed.left.len()
        ),
        (2, vec![c.org_id.clone()], 0),
        "{rekeyed:?}"
    );
    for op in rekeyed.queued {
        let op = engine
            .wait_operation(op.id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    }
    workers.shutdown().await;
    let again = engine.rekey(&actor()).await.unwrap();
    assert!(
        again.queued.is_empty() && again.in_registry.is_empty() && again.left.is_empty(),
        "nothing left: {again:?}"
    );

    // The old key can go now: every tenant's password derives from the new one, the deleted
    // one's too (purging it needs no password, but a registry restored to before its deletion
    // would).
    let mut rotated = config(&fleet);
    rotated.engine.master_key = Some(SecretString::from(new_key));
    let engine = Engine::start(rotated).await.unwrap();
    for tenant in [&a, &b] {
        connect_with(cluster, tenant, &password(&engine, tenant).await)
            .await
            .unwrap();
    }
    password(&engine, &c).await;
}
