//! One builder for every test that needs database servers: throw-away clusters, and the same
//! fleet as the configuration file the registry and `tenantctl` read (TOML text plus the
//! secrets it names). Crates turn the TOML into their own configuration type.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::pg::{ADMIN_PASSWORD, ClusterOptions, PgCluster};

/// The master key of every test fleet (test-only, never used elsewhere).
pub const MASTER_KEY: &str = "testkit-master-key-0123456789abcdef0123456789";
/// The variable the configuration names for the master key.
pub const MASTER_KEY_ENV: &str = "TENANCY_MASTER_KEY";

/// A database server of the fleet: its id and region in the configuration, and its cluster.
pub struct TestServer {
    pub id: String,
    pub region: String,
    pub cluster: PgCluster,
}

impl TestServer {
    /// The variable the configuration names for this server's admin password.
    pub fn password_env(&self) -> String {
        format!(
            "TENANCY_SERVER_PASSWORD_{}",
            self.id.to_uppercase().replace('-', "_")
        )
    }
}

/// Servers (each its own cluster; the first also holds the registry database) and the engine
/// settings of a test: short leases, fast polling and backoff.
pub struct TestFleet {
    pub servers: Vec<TestServer>,
    engine: BTreeMap<String, String>,
    dir: tempfile::TempDir,
}

/// Builds a [`TestFleet`].
pub struct FleetBuilder {
    servers: Vec<(String, String, Option<ClusterOptions>)>,
    engine: BTreeMap<String, String>,
    options: ClusterOptions,
}

impl FleetBuilder {
    /// Adds a server `id` in `region`.
    pub fn server(mut self, id: &str, region: &str) -> Self {
        self.servers.push((id.into(), region.into(), None));
        self
    }

    /// Adds a server `id` in `region` whose cluster is tuned its own way.
    pub fn server_with(mut self, id: &str, region: &str, options: ClusterOptions) -> Self {
        self.servers.push((id.into(), region.into(), Some(options)));
        self
    }

    /// Sets an `[engine]` setting, `value` as TOML (`"2s"` with its quotes, `4`).
    pub fn engine(mut self, key: &str, value: &str) -> Self {
        self.engine.insert(key.into(), value.into());
        self
    }

    /// Every server requires TLS (a CA of its own each); the configuration says `verify-full`
    /// with that CA.
    pub fn tls(mut self) -> Self {
        self.options = self.options.with_tls();
        self
    }

    pub fn cluster_options(mut self, options: ClusterOptions) -> Self {
        self.options = options;
        self
    }

    pub fn build(self) -> Result<TestFleet> {
        crate::init_test_logging();
        let servers = if self.servers.is_empty() {
            vec![("pg-1".to_owned(), "local".to_owned(), None)]
        } else {
            self.servers
        };
        let servers = servers
            .into_iter()
            .map(|(id, region, options)| {
                Ok(TestServer {
                    id,
                    region,
                    cluster: PgCluster::start_with(
                        options.unwrap_or_else(|| self.options.clone()),
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        servers[0].cluster.create_database("tenancy_registry")?;
        Ok(TestFleet {
            servers,
            engine: self.engine,
            dir: tempfile::tempdir()?,
        })
    }
}

impl TestFleet {
    /// One server `pg-1` in region `local`.
    pub fn single() -> Result<Self> {
        Self::builder().build()
    }

    pub fn builder() -> FleetBuilder {
        let engine = [
            ("workers", "2"),
            ("lease", "\"2s\""),
            ("poll_interval", "\"100ms\""),
            ("backoff_base", "\"100ms\""),
            ("backoff_max", "\"1s\""),
            ("max_attempts", "20"),
            ("reconcile_interval", "\"1h\""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        FleetBuilder {
            servers: Vec::new(),
            engine,
            options: ClusterOptions::default(),
        }
    }

    pub fn server(&self, id: &str) -> &TestServer {
        self.servers
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no server {id} in the fleet"))
    }

    pub fn cluster(&self, id: &str) -> &PgCluster {
        &self.server(id).cluster
    }

    /// The registry database's URL (as the superuser).
    pub fn registry_url(&self) -> String {
        self.servers[0].cluster.url("tenancy_registry")
    }

    /// The fleet as the registry's configuration file.
    pub fn toml(&self) -> String {
        let mut toml = format!(
            "[registry]\nurl = \"{}\"\n\n[engine]\n",
            self.registry_url()
        );
        for (key, value) in &self.engine {
            toml.push_str(&format!("{key} = {value}\n"));
        }
        toml.push_str(&format!("master_key_env = \"{MASTER_KEY_ENV}\"\n"));
        // Backups in the fleet's own directory, never the working directory's default.
        toml.push_str(&format!(
            "\n[backups]\nurl = \"{}\"\n",
            self.dir().join("backups").display()
        ));
        for server in &self.servers {
            toml.push_str(&format!(
                "\n[[servers]]\nid = \"{}\"\nregion = \"{}\"\nhost = \"{}\"\nport = {}\n\
                 admin_user = \"{}\"\npassword_env = \"{}\"\ncapacity = 1000\n",
                server.id,
                server.region,
                server.cluster.host(),
                server.cluster.port(),
                server.cluster.admin_user(),
                server.password_env(),
            ));
            if let Some(ca) = server.cluster.ca_file() {
                toml.push_str(&format!(
                    "sslmode = \"verify-full\"\nca_file = \"{}\"\n",
                    ca.display()
                ));
            }
        }
        toml
    }

    /// The value of a secret the configuration names.
    pub fn secret(&self, var: &str) -> Option<String> {
        self.env()
            .into_iter()
            .find_map(|(name, value)| (name == var).then_some(value))
    }

    /// Every secret the configuration names, as environment variables.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![(MASTER_KEY_ENV.to_owned(), MASTER_KEY.to_owned())];
        for server in &self.servers {
            env.push((server.password_env(), ADMIN_PASSWORD.to_owned()));
        }
        env
    }

    /// The configuration written to a file of the fleet's own (rewritten on every call).
    pub fn config_file(&self) -> Result<PathBuf> {
        let path = self.dir.path().join("tenancy.toml");
        std::fs::write(&path, self.toml())?;
        Ok(path)
    }

    /// A directory that lives as long as the fleet (logs, key files).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `program` with the fleet's configuration file and secrets in its environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let mut command = Command::new(program);
        command.env("TENANCY_CONFIG", self.config_file()?);
        command.envs(self.env());
        Ok(command)
    }

    /// `tenant_*` databases on a server (the template excluded), sorted.
    pub fn tenant_databases(&self, server: &str) -> Vec<String> {
        self.names(
            server,
            "SELECT datname FROM pg_database WHERE datname LIKE 'tenant\\_%' \
             AND datname <> 'tenant_template' ORDER BY 1",
        )
    }

    /// `tenant_*` roles on a server, sorted.
    pub fn tenant_roles(&self, server: &str) -> Vec<String> {
        self.names(
            server,
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tenant\\_%' ORDER BY 1",
        )
    }

    fn names(&self, server: &str, sql: &str) -> Vec<String> {
        self.cluster(server)
            .psql("postgres", sql)
            .expect("listing names")
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}
