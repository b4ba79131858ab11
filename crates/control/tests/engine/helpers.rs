use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};
use tenancy_control::{Actor, Config, Engine, Onboarded, TierLimits};
use tenancy_core::{CreateTenant, OperationState, OrgId, Tenant, TenantStatus};
use tenancy_testkit::{PgCluster, TestFleet, eventually};

/// The fleet as the engine's configuration.
pub fn config(fleet: &TestFleet) -> Config {
    Config::from_toml(&fleet.toml(), |var| fleet.secret(var)).expect("fleet configuration")
}

/// Adds the tier `name`: `free` as `change` leaves it.
pub fn add_tier(config: &mut Config, name: &str, change: impl FnOnce(&mut TierLimits)) {
    let mut tier = config.tiers[&"free".parse::<tenancy_core::Tier>().unwrap()].clone();
    change(&mut tier);
    config.tiers.insert(name.parse().unwrap(), tier);
}

/// An engine on the fleet (registry migrated, servers prepared), no workers.
pub async fn engine(fleet: &TestFleet) -> Engine {
    Engine::start(config(fleet)).await.expect("engine start")
}

/// An engine whose workers run until the test's runtime ends.
pub async fn engine_with_workers(fleet: &TestFleet) -> Engine {
    let engine = engine(fleet).await;
    std::mem::forget(engine.run_workers());
    engine
}

/// A connection to the registry database, for checks the engine does not offer.
pub async fn registry(fleet: &TestFleet) -> PgConnection {
    PgConnection::connect(&fleet.registry_url()).await.unwrap()
}

pub fn request(org_id: &str, name: &str) -> CreateTenant {
    CreateTenant::new(org_id.parse().unwrap(), name.parse().unwrap())
}

pub fn actor() -> Actor {
    Actor::named("test")
}

pub fn org(id: &str) -> OrgId {
    id.parse().unwrap()
}

/// Moves the tenant to `tier` and waits until its `retier` operation succeeded.
pub async fn retier(engine: &Engine, org_id: &OrgId, tier: &str) {
    let update = tenancy_core::UpdateTenant {
        name: None,
        tier: Some(tier.parse().unwrap()),
    };
    let (_, op) = engine
        .update_tenant(org_id, &update, &actor())
        .await
        .unwrap();
    let op = engine
        .wait_operation(op.expect("a retier").id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
}

/// How many operations of `kind` the tenant has had.
pub async fn operations_of_kind(
    engine: &Engine,
    org_id: &OrgId,
    kind: tenancy_core::OperationKind,
) -> usize {
    engine
        .tenant_operations(org_id, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|op| op.kind == kind)
        .count()
}

/// Onboards and waits until the provisioning operation finished; returns the tenant.
pub async fn onboard(engine: &Engine, req: CreateTenant) -> Tenant {
    let org_id = req.org_id.clone().unwrap();
    if let Onboarded::Created { operation, .. } = engine.onboard(req, &actor()).await.unwrap() {
        let op = engine
            .wait_operation(operation.id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(op.state, OperationState::Succeeded, "provisioning: {op:?}");
    }
    engine.tenant(&org_id).await.unwrap()
}

/// Deletes the tenant (refusing if it is an agency with clients) and waits for the deletion.
pub async fn delete_and_wait(engine: &Engine, org_id: &OrgId) -> tenancy_core::Operation {
    let op = engine
        .delete(org_id, tenancy_control::Cascade::Refuse, &actor())
        .await
        .unwrap();
    engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap()
}

/// Waits until the tenant reaches `status`.
pub async fn wait_status(
    engine: &Engine,
    org_id: &OrgId,
    status: TenantStatus,
    timeout: Duration,
) -> Tenant {
    eventually(timeout, format!("tenant {org_id} {status}"), || async {
        let tenant = engine.tenant(org_id).await.unwrap();
        (tenant.status == status).then_some(tenant)
    })
    .await
}

/// Onboards a tenant whose provisioning is bound to fail, and waits until it is `failed`.
pub async fn onboard_until_failed(engine: &Engine, org_id: &str, name: &str) -> Tenant {
    engine
        .onboard(request(org_id, name), &actor())
        .await
        .unwrap();
    wait_status(
        engine,
        &org(org_id),
        TenantStatus::Failed,
        Duration::from_secs(30),
    )
    .await
}

/// Retries a failed tenant's provisioning and waits until it succeeded; returns the tenant,
/// active.
pub async fn retry_until_active(engine: &Engine, org_id: &OrgId) -> Tenant {
    let op = engine.retry(org_id, &actor()).await.unwrap();
    let op = engine
        .wait_operation(op.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(op.state, OperationState::Succeeded, "{op:?}");
    let tenant = engine.tenant(org_id).await.unwrap();
    assert_eq!(tenant.status, TenantStatus::Active);
    tenant
}

/// Waits until the tenant is gone from the registry (purged).
pub async fn wait_gone(engine: &Engine, org_id: &OrgId) {
    eventually(
        Duration::from_secs(30),
        format!("{org_id} purged"),
        || async { engine.tenant(org_id).await.is_err().then_some(()) },
    )
    .await
}

/// Connects to `dbname` as the tenant's role, with the password the engine derives for it.
pub async fn connect_as(
    engine: &Engine,
    cluster: &PgCluster,
    tenant: &Tenant,
    dbname: &str,
) -> Result<PgConnection, sqlx::Error> {
    let password = engine.tenant_password(&tenant.org_id).await.unwrap();
    let role = tenant.role_name();
    PgConnection::connect(&cluster.url_as(role.as_str(), password.expose_secret(), dbname)).await
}

/// Connects to the tenant's own database as its role.
pub async fn connect_own(
    engine: &Engine,
    cluster: &PgCluster,
    tenant: &Tenant,
) -> Result<PgConnection, sqlx::Error> {
    connect_as(engine, cluster, tenant, tenant.db_name.as_str()).await
}

/// An engine on `config` whose single worker dies at `(kind, step, moment)`, once; the flag
/// tells when it did.
pub async fn doomed_engine(
    mut config: Config,
    kind: tenancy_core::OperationKind,
    step: tenancy_core::Step,
    moment: tenancy_control::faults::Moment,
) -> (Engine, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let crashed = std::sync::Arc::new(AtomicBool::new(false));
    let flag = crashed.clone();
    let fault =
        move |k, s, m| k == kind && s == step && m == moment && !flag.swap(true, Ordering::SeqCst);
    config.engine.workers = 1;
    let engine = Engine::start_with_faults(config, std::sync::Arc::new(fault))
        .await
        .unwrap();
    (engine, crashed)
}

/// Onboards `request` on a [`doomed_engine`] whose provisioning dies at `(step, moment)`, its
/// warm pool filled first (nothing to do without one), and returns once it died: the operation
/// stays running under the dead worker's lease until that expires.
pub async fn onboard_and_die(
    config: Config,
    step: tenancy_core::Step,
    moment: tenancy_control::faults::Moment,
    request: CreateTenant,
) {
    let (doomed, crashed) =
        doomed_engine(config, tenancy_core::OperationKind::Provision, step, moment).await;
    doomed.refill_warm_pool().await.unwrap();
    let workers = doomed.run_workers();
    doomed.onboard(request, &actor()).await.unwrap();
    wait_crash(&crashed).await;
    workers.shutdown().await;
}

/// Waits until a [`doomed_engine`]'s fault fired.
pub async fn wait_crash(crashed: &std::sync::atomic::AtomicBool) {
    eventually(Duration::from_secs(60), "the fault fires", || async {
        crashed
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(())
    })
    .await
}

/// Rows that exercise a copy (a move's, a backup's): an enum, foreign keys, identity sequences, large JSON values.
pub async fn seed_tenant(engine: &Engine, cluster: &PgCluster, tenant: &Tenant) {
    let mut conn = connect_own(engine, cluster, tenant).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO members (zitadel_user, email, display_name, role)
           SELECT 'u' || i, 'u' || i || '@example.com', 'User ' || i,
                  (ARRAY['owner','admin','member','viewer'])[1 + i % 4]::member_role
           FROM generate_series(1, 200) i;
         INSERT INTO teams (name) SELECT 'team ' || i FROM generate_series(1, 20) i;
         INSERT INTO team_members SELECT t.id, m.id FROM teams t, members m WHERE m.id % 20 = t.id % 20;
         INSERT INTO settings (key, value)
           SELECT 'big' || i, to_jsonb(repeat(md5(i::text), 20000)) FROM generate_series(1, 5) i;
         INSERT INTO activity_log (member_id, action, detail)
           SELECT 1 + i % 200, 'seed', jsonb_build_object('i', i) FROM generate_series(1, 2000) i;
         -- Large objects (an invoice over several of a move's chunks, and one shared with
         -- everyone), their ids kept in a row as an application would.
         INSERT INTO settings (key, value) VALUES ('invoice', to_jsonb(
           lo_from_bytea(0, convert_to(repeat('invoice line ', 200000), 'UTF8'))::bigint));
         DO $$ BEGIN
           EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO PUBLIC', lo_from_bytea(0, 'shared'));
         END $$;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}
