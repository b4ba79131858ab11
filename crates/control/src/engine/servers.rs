//! Database servers: listing, registering, draining, and the configuration file's servers.

use tenancy_core::{
    AddServer, ErrorCode, SERVER_PASSWORD_PREFIX, Server, ServerId, ServerState, SslMode,
};

use super::Engine;
use crate::config::ServerConfig;
use crate::error::ControlError;
use crate::pgadmin::ServerAdmin;
use crate::store::{Actor, ServerChange};
use tracing::{info, warn};

impl Engine {
    pub async fn servers(&self) -> Result<Vec<Server>, ControlError> {
        self.store().servers().await
    }

    pub async fn server(&self, id: &ServerId) -> Result<Server, ControlError> {
        self.store()
            .server(id)
            .await?
            .ok_or_else(|| ControlError::NotFound {
                what: format!("server {id}"),
            })
    }

    /// Admin connections to a server known to the registry.
    pub async fn server_admin(&self, id: &ServerId) -> Result<ServerAdmin, ControlError> {
        self.inner.admins.get(id).await
    }

    /// Registers a server, `disabled`, then prepares it (template created and migrated) and
    /// only then marks it active. Its password must be in this process's environment under
    /// `password_env` (a `TENANCY_SERVER_PASSWORD_*` variable), and in every other registry
    /// process's. A server that cannot be prepared stays registered and disabled: the error says
    /// why, and `activate` tries again.
    pub async fn add_server(
        &self,
        request: &AddServer,
        actor: &Actor,
    ) -> Result<Server, ControlError> {
        self.record_server(request, actor).await?;
        self.prepare_and_activate(&request.id, actor).await
    }

    /// As [`Engine::add_server`] from a tool (`tenantctl`): the server is recorded and prepared
    /// from this process, then left disabled for a registry replica to activate once it has
    /// connected to it itself (see [`Engine::activate_requested_servers`]), so that no registry
    /// places tenants on a server it cannot reach.
    pub async fn register_server(
        &self,
        request: &AddServer,
        actor: &Actor,
    ) -> Result<Server, ControlError> {
        self.record_server(request, actor).await?;
        self.request_activation(&request.id, actor).await
    }

    /// Asks a registry replica to activate `id` once it has connected to it; prepares it first
    /// when it never was (see [`Engine::register_server`]).
    pub async fn request_activation(
        &self,
        id: &ServerId,
        actor: &Actor,
    ) -> Result<Server, ControlError> {
        if self.server(id).await?.template_version.is_none() {
            let admin = self.inner.admins.get(id).await?;
            let version = admin.prepare(self.config().engine.template_version).await?;
            self.record_template_version(id, version).await?;
        }
        self.store().request_activation(id, actor).await?;
        self.server(id).await
    }

    /// Activates the servers a tool asked to be activated that this process can reach (it
    /// prepares each again, which proves its connection and its privileges). A server this
    /// process has no password for stays as it is; it is said once, and another replica may
    /// activate it.
    pub(crate) async fn activate_requested_servers(&self) -> Result<(), ControlError> {
        for id in self.store().activations_requested().await? {
            if self.admins().unreachable().contains(&id) {
                continue;
            }
            match self.prepare_and_activate(&id, &Actor::system()).await {
                Ok(_) => info!(server_id = %id, "server activated: this registry reaches it"),
                Err(e @ ControlError::UnknownServer { .. }) => {
                    warn!(server_id = %id, error = %e, "cannot activate the server from this registry")
                }
                Err(e) => warn!(server_id = %id, error = %e, "server not activated yet"),
            }
        }
        Ok(())
    }

    /// Records a server from a request, disabled, once its password is at hand here. The
    /// password variable is the server's own (named after its id, used by no other server), and
    /// a remote host is reached over verified TLS: a request can neither make the registry send
    /// another server's password nor send one in the clear.
    async fn record_server(&self, request: &AddServer, actor: &Actor) -> Result<(), ControlError> {
        let own = password_env_of(&request.id);
        if request.password_env.as_str() != own {
            return Err(ControlError::conflict(
                ErrorCode::ServerRefused,
                format!(
                    "password_env: server {}'s password variable is {own} (named after the \
                     server, so that no request can name another server's)",
                    request.id
                ),
            ));
        }
        let configured = self
            .config()
            .servers
            .iter()
            .map(|s| (&s.id, &s.password_env));
        let other = match configured
            .filter(|(id, _)| **id != request.id)
            .find(|(_, env)| env.as_deref() == Some(own.as_str()))
        {
            Some((other, _)) => Some(other.clone()),
            None => {
                self.store()
                    .server_with_password_env(&own, &request.id)
                    .await?
            }
        };
        if let Some(other) = other {
            return Err(ControlError::conflict(
                ErrorCode::ServerRefused,
                format!("{own} is server {other}'s password variable"),
            ));
        }
        if request.sslmode == Some(SslMode::VerifyCa) && request.ca_pem.is_none() {
            return Err(ControlError::conflict(
                ErrorCode::ServerRefused,
                "sslmode verify-ca needs the server's CA in ca_pem (with the public web roots any \
                 certificate for any name would pass); or use verify-full",
            ));
        }
        if !tenancy_core::is_loopback_host(request.host.as_str())
            && matches!(request.sslmode, Some(SslMode::Disable | SslMode::Require))
        {
            return Err(ControlError::conflict(
                ErrorCode::ServerRefused,
                format!(
                    "sslmode: a server at {} is reached over verified TLS (verify-ca with its CA, \
                     or verify-full); disable and require are for loopback hosts only",
                    request.host
                ),
            ));
        }
        if std::env::var_os(request.password_env.as_str()).is_none() {
            return Err(ControlError::conflict(
                ErrorCode::PasswordEnvUnset,
                format!(
                    "environment variable {} is not set in the registry process",
                    request.password_env
                ),
            ));
        }
        if let Some(pem) = &request.ca_pem {
            tenancy_pgtls::parse_ca(pem)
                .map_err(|e| ControlError::Validation(format!("ca_pem: {e}")))?;
        }
        let config = ServerConfig {
            id: request.id.clone(),
            region: request.region.clone(),
            host: request.host.to_string(),
            port: request.port.get(),
            admin_user: request.admin_user.to_string(),
            password_env: Some(request.password_env.to_string()),
            password: None,
            admin_database: request
                .admin_database
                .as_ref()
                .map_or_else(|| "postgres".into(), ToString::to_string),
            capacity: request.capacity,
            state: ServerState::Disabled,
            sslmode: request.sslmode,
            ca_file: None,
            ca_pem: request.ca_pem.clone(),
            warm_pool: None,
            allow_unverified_tls: false,
            wal_archive: None,
        };
        self.store().add_server(&config, actor).await
    }

    /// Prepares a server and marks it active; on failure it stays as it was.
    async fn prepare_and_activate(
        &self,
        id: &ServerId,
        actor: &Actor,
    ) -> Result<Server, ControlError> {
        let admin = self.inner.admins.get(id).await?;
        let version = admin.prepare(self.config().engine.template_version).await?;
        self.record_template_version(id, version).await?;
        self.store()
            .set_server_state(id, ServerState::Active, actor)
            .await?;
        self.server(id).await
    }

    /// Records the version a server's template was migrated to.
    pub(crate) async fn record_template_version(
        &self,
        id: &ServerId,
        version: i32,
    ) -> Result<(), ControlError> {
        self.store().set_template_version(id, Some(version)).await
    }

    /// Marks a server active, draining (keeps its tenants, takes no new ones) or disabled. A
    /// server never prepared (registered, but unreachable then) is prepared before it becomes
    /// active.
    pub async fn set_server_state(
        &self,
        id: &ServerId,
        state: ServerState,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        if state == ServerState::Active && self.server(id).await?.template_version.is_none() {
            return self.prepare_and_activate(id, actor).await.map(drop);
        }
        self.store().set_server_state(id, state, actor).await
    }

    /// Deletes a server registered through the API that was never prepared (see
    /// [`crate::store::Store::delete_server`]). A server of the configuration file is the
    /// file's: refused (`server_refused`), remove it there.
    pub async fn delete_server(&self, id: &ServerId, actor: &Actor) -> Result<(), ControlError> {
        if self.config().servers.iter().any(|s| &s.id == id) {
            return Err(ControlError::conflict(
                ErrorCode::ServerRefused,
                format!("server {id} is in the configuration file: remove it there"),
            ));
        }
        self.store().delete_server(id, actor).await?;
        self.inner.admins.forget(id);
        Ok(())
    }

    /// How the configuration file's servers differ from the registry's records.
    pub async fn configured_server_changes(&self) -> Result<Vec<ServerChange>, ControlError> {
        self.store().server_changes(&self.config().servers).await
    }

    /// Records the configuration file's servers in the registry (what the registry does at
    /// start-up; `tenantctl servers sync` does it on demand).
    pub async fn apply_configured_servers(&self, actor: &Actor) -> Result<(), ControlError> {
        self.store()
            .apply_configured_servers(&self.config().servers, actor)
            .await
    }
}

/// The password variable a server registered through the API or `tenantctl` must use:
/// `TENANCY_SERVER_PASSWORD_` and its id, upper-cased, `-` as `_`.
pub fn password_env_of(id: &ServerId) -> String {
    format!(
        "{SERVER_PASSWORD_PREFIX}{}",
        id.as_str().to_ascii_uppercase().replace(['-', '.'], "_")
    )
}
