//! A tenant's connection works with more than one PostgreSQL client: libpq (psql) and pg8000, a
//! pure-Python client whose SCRAM implementation (scramp) refuses verifiers of fewer than the
//! 4,096 iterations RFC 7677 asks for.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tenancy_client::{Onboarding, RegistryClient};
use tenancy_core::{ConnectionInfo, CreateTenant};
use tenancy_e2e::{Deployment, TOKEN};

/// What `program` prints to log in as the tenant and ask who it is, with the connection's
/// settings in the environment (never on a command line).
fn who_am_i(mut command: Command, info: &ConnectionInfo) -> String {
    let output = command
        .env("PGHOST", &info.host)
        .env("PGPORT", info.port.to_string())
        .env("PGUSER", info.user.as_str())
        .env("PGDATABASE", info.dbname.as_str())
        .env(
            "PGPASSWORD",
            info.password.as_deref().expect("active: a password"),
        )
        .output()
        .expect("the client runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn a_tenant_connection_works_with_libpq_and_a_pure_python_scram_client() {
    let deployment = Deployment::new().unwrap();
    let registry = deployment.start().await.unwrap();
    let client = RegistryClient::new(registry.base.as_str(), TOKEN);
    let request = CreateTenant::new("7700".parse().unwrap(), "Clients Ltd".parse().unwrap());
    let onboarded = client
        .onboard(&request, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(matches!(onboarded, Onboarding::Active(_)), "{onboarded:?}");
    let info = client.connection(&"7700".parse().unwrap()).await.unwrap();

    let mut psql = Command::new("psql");
    psql.args(["-XAtc", "SELECT current_user"]);
    assert_eq!(who_am_i(psql, &info), "tenant_clients_ltd");

    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local/venv/bin/python");
    assert!(
        python.is_file(),
        "{} not found: `make test` installs pg8000 into .local/venv",
        python.display()
    );
    let mut pg8000 = Command::new(python);
    pg8000.args([
        "-c",
        "import os, pg8000.native as pg\n\
         c = pg.Connection(user=os.environ['PGUSER'], password=os.environ['PGPASSWORD'],\n\
                           host=os.environ['PGHOST'], port=int(os.environ['PGPORT']),\n\
                           database=os.environ['PGDATABASE'])\n\
         print(c.run('SELECT current_user')[0][0])",
    ]);
    assert_eq!(who_am_i(pg8000, &info), "tenant_clients_ltd");
}
