use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::{Connection, PgConnection};
use tenancy_control::{Actor, Config, Engine, Onboarded, ServerConfig};
use tenancy_core::{CreateTenant, OperationState, OrgId, Tenant, TenantStatus};
use tenancy_testkit::PgCluster;

/// A registry and one or more database servers, each its own throw-away cluster. The registry
/// database lives on the first server's cluster, as in `make run`.
pub struct TestEnv {
    pub servers: Vec<(PgCluster, &'static str, &'static str)>,
}

impl TestEnv {
    /// One server `pg-1` in region `local`.
    pub fn single() -> Self {
        Self::with_servers(&[("pg-1", "local")])
    }

    pub fn with_servers(servers: &[(&'static str, &'static str)]) -> Self {
        tenancy_testkit::init_test_logging();
        let servers: Vec<_> = servers
            .iter()
            .map(|(id, region)| (PgCluster::start().expect("start cluster"), *id, *region))
            .collect();
        servers[0].0.create_database("tenancy_registry").unwrap();
        Self { servers }
    }

    pub fn cluster(&self, id: &str) -> &PgCluster {
        &self
            .servers
            .iter()
            .find(|(_, sid, _)| *sid == id)
            .expect("server")
            .0
    }

    /// Fast settings: short leases and backoff so crash and retry tests finish quickly.
    pub fn config(&self) -> Config {
        let mut config = Config::new(self.servers[0].0.url("tenancy_registry"));
        config.engine.workers = 2;
        config.engine.lease = Duration::from_secs(2);
        config.engine.poll_interval = Duration::from_millis(100);
        config.engine.backoff_base = Duration::from_millis(100);
        config.engine.backoff_max = Duration::from_secs(1);
        config.engine.max_attempts = 20;
        config.engine.reconcile_interval = Duration::from_secs(3600);
        config.engine.master_key = Some(SecretString::from("test-master-key"));
        config.servers = self
            .servers
            .iter()
            .map(|(cluster, id, region)| {
                ServerConfig::new(
                    id.parse().unwrap(),
                    region.parse().unwrap(),
                    cluster.host(),
                    cluster.port(),
                    cluster.admin_user(),
                    SecretString::from(cluster.admin_password()),
                )
            })
            .collect();
        config
    }

    pub async fn engine(&self) -> Engine {
        Engine::start(self.config()).await.expect("engine start")
    }

    /// `tenant_*` databases on a server (the template excluded).
    pub fn tenant_databases(&self, server: &str) -> Vec<String> {
        lines(&self.cluster(server).psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE datname LIKE 'tenant\\_%' AND datname <> 'tenant_template' ORDER BY 1",
        ).unwrap())
    }

    pub fn tenant_roles(&self, server: &str) -> Vec<String> {
        lines(
            &self
                .cluster(server)
                .psql(
                    "postgres",
                    "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenant\\_%' ORDER BY 1",
                )
                .unwrap(),
        )
    }
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
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

/// Onboards and waits until the provisioning operation finished; returns the tenant.
pub async fn onboard(engine: &Engine, req: CreateTenant) -> Tenant {
    let org_id = req.org_id.clone();
    match engine.onboard(req, &actor()).await.expect("onboard") {
        Onboarded::Created { operation, .. } => {
            let op = engine
                .wait_operation(operation.id, Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(op.state, OperationState::Succeeded, "provisioning: {op:?}");
        }
        Onboarded::Existing { .. } => {}
    }
    engine.tenant(org_id.as_ref().unwrap()).await.unwrap()
}

/// Waits until the tenant reaches `status`.
pub async fn wait_status(
    engine: &Engine,
    org_id: &OrgId,
    status: TenantStatus,
    timeout: Duration,
) -> Tenant {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let tenant = engine.tenant(org_id).await.unwrap();
        if tenant.status == status {
            return tenant;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tenant {org_id} still {:?}, wanted {status:?}",
            tenant.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects to a tenant database as a role, with the password the engine derives for it.
pub async fn connect_as(
    engine: &Engine,
    cluster: &PgCluster,
    role: &str,
    dbname: &str,
) -> Result<PgConnection, sqlx::Error> {
    let password = engine.tenant_password(&role.parse().unwrap()).unwrap();
    PgConnection::connect(&cluster.url_as(role, password.expose_secret(), dbname)).await
}
