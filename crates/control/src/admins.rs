//! [`ServerAdmins`]: the admin connections to every database server, owned in one place and
//! shared by the engine, the workers and the reconciler.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use secrecy::SecretString;
use tenancy_core::{SERVER_PASSWORD_PREFIX, ServerId};

use crate::config::{Config, ServerConfig};
use crate::error::ControlError;
use crate::pgadmin::ServerAdmin;
use crate::store::Store;

/// Admin connections per server, built on first use from the registry's record of the server
/// and the password this process holds for it: the configuration file's, or the one in the
/// environment variable the record names.
#[derive(Clone)]
pub struct ServerAdmins {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// The configuration file's servers, with their passwords.
    configured: Vec<ServerConfig>,
    pool_size: u32,
    admins: RwLock<HashMap<ServerId, ServerAdmin>>,
    scram_iterations: u32,
    /// Servers this process has no password for (see [`ServerAdmins::unreachable`]).
    unreachable: RwLock<BTreeSet<ServerId>>,
}

impl ServerAdmins {
    pub(crate) fn new(store: Store, config: &Config) -> Self {
        let pool_size = u32::try_from(config.engine.workers)
            .unwrap_or(u32::MAX)
            .saturating_add(2);
        Self {
            inner: Arc::new(Inner {
                store,
                configured: config.servers.clone(),
                pool_size,
                admins: RwLock::default(),
                scram_iterations: config.engine.scram_iterations,
                unreachable: RwLock::default(),
            }),
        }
    }

    /// The admin connections of a server the registry knows.
    pub async fn get(&self, id: &ServerId) -> Result<ServerAdmin, ControlError> {
        if let Some(admin) = self.inner.admins.read().expect("admins lock").get(id) {
            return Ok(admin.clone());
        }
        let mut config =
            self.inner
                .store
                .server_config(id)
                .await?
                .ok_or_else(|| ControlError::NotFound {
                    what: format!("server {id}"),
                })?;
        let password = self.password(&config);
        let mut unreachable = self.inner.unreachable.write().expect("unreachable lock");
        if let Err(ControlError::UnknownServer { .. }) = &password {
            unreachable.insert(id.clone());
        } else {
            unreachable.remove(id);
        }
        drop(unreachable);
        config.password = Some(password?);
        let admin = ServerAdmin::new(&config, self.inner.pool_size)?
            .with_scram_iterations(self.inner.scram_iterations);
        Ok(self
            .inner
            .admins
            .write()
            .expect("admins lock")
            .entry(id.clone())
            .or_insert(admin)
            .clone())
    }

    /// Closes and forgets a server's admin connections (the server was deleted).
    pub(crate) fn forget(&self, id: &ServerId) {
        let admin = self.inner.admins.write().expect("admins lock").remove(id);
        self.inner
            .unreachable
            .write()
            .expect("unreachable lock")
            .remove(id);
        if let Some(admin) = admin {
            tokio::spawn(async move { admin.close().await });
        }
    }

    fn password(&self, server: &ServerConfig) -> Result<SecretString, ControlError> {
        if let Some(password) = self
            .inner
            .configured
            .iter()
            .find(|c| c.id == server.id)
            .and_then(|c| c.password.clone())
        {
            return Ok(password);
        }
        let var = server
            .password_env
            .as_deref()
            .ok_or_else(|| ControlError::UnknownServer {
                server: server.id.clone(),
                why: "it is not in this process's configuration file and its record names no \
                      password variable"
                    .into(),
            })?;
        // A variable named by a record (registered through the API) is read only when it is a
        // server password's: the registry never sends another secret of its own to a host.
        if !var.starts_with(SERVER_PASSWORD_PREFIX) {
            return Err(ControlError::Config(format!(
                "server {}: its record names the variable {var}, which is not a \
                 {SERVER_PASSWORD_PREFIX}* variable; refused",
                server.id
            )));
        }
        std::env::var(var)
            .map(SecretString::from)
            .map_err(|_| ControlError::UnknownServer {
                server: server.id.clone(),
                why: format!("its password variable {var} is not set in this process"),
            })
    }

    /// The servers this process found it cannot open admin connections to (it has no password
    /// for them): placement in this process leaves them out. Read from memory: a server is
    /// found out the first time this process needs it.
    pub fn unreachable(&self) -> Vec<ServerId> {
        self.inner
            .unreachable
            .read()
            .expect("unreachable lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Every server the registry knows, in id order.
    pub async fn ids(&self) -> Result<Vec<ServerId>, ControlError> {
        Ok(self
            .inner
            .store
            .servers()
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect())
    }
}
