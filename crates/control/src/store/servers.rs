//! `database_servers`: where tenants are placed. Connection settings without secrets; the state
//! (`active`, `draining`, `disabled`) is the registry's, changed by drain and activate.

use serde::Serialize;
use sqlx::FromRow;
use tenancy_core::{ErrorCode, Region, Server, ServerId, ServerState, SslMode};

use super::{Actor, Maybe, Store, audit, commit_audited, is_unique_violation, parse_all};
use crate::config::ServerConfig;
use crate::error::ControlError;

/// The key of the advisory lock that orders a server's template versions against activations
/// there (`$1` is the server's id): recording a new version takes it exclusively, activating a
/// tenant takes it shared (see `tenants::activate`).
pub(super) const TEMPLATE_VERSION_LOCK: &str = "hashtext('tenancy.template_version:' || $1)";

/// The one column list of a server read, with its tenant count.
const SERVER_COLUMNS: &str = "s.id, s.region, s.host, s.port, s.admin_user, s.password_env, \
    s.admin_database, s.capacity, s.state, s.template_version, s.sslmode, s.ca_pem, \
    (SELECT count(*) FROM tenants t WHERE t.server_id = s.id) AS tenants, \
    (SELECT count(*) FROM spare_databases p WHERE p.server_id = s.id AND p.ready \
        AND p.claimed_by IS NULL AND p.template_version = s.template_version) AS spares";

#[derive(FromRow)]
struct ServerRow {
    #[sqlx(try_from = "String")]
    id: ServerId,
    #[sqlx(try_from = "String")]
    region: Region,
    host: String,
    port: i32,
    admin_user: String,
    password_env: Option<String>,
    admin_database: String,
    capacity: i32,
    #[sqlx(try_from = "String")]
    state: ServerState,
    template_version: Option<i32>,
    #[sqlx(try_from = "Option<String>")]
    sslmode: Maybe<SslMode>,
    ca_pem: Option<String>,
    tenants: i64,
    spares: i64,
}

impl ServerRow {
    fn config(&self) -> Result<ServerConfig, ControlError> {
        Ok(ServerConfig {
            id: self.id.clone(),
            region: self.region.clone(),
            host: self.host.clone(),
            port: u16::try_from(self.port).map_err(ControlError::corrupt)?,
            admin_user: self.admin_user.clone(),
            password_env: self.password_env.clone(),
            password: None,
            admin_database: self.admin_database.clone(),
            capacity: u32::try_from(self.capacity).map_err(ControlError::corrupt)?,
            state: self.state,
            sslmode: self.sslmode.0,
            ca_file: None,
            ca_pem: self.ca_pem.clone(),
            warm_pool: None,
            allow_unverified_tls: false,
            wal_archive: None,
        })
    }

    fn view(&self) -> Result<Server, ControlError> {
        Ok(Server {
            id: self.id.clone(),
            region: self.region.clone(),
            host: self.host.clone(),
            port: u16::try_from(self.port).map_err(ControlError::corrupt)?,
            capacity: u32::try_from(self.capacity).map_err(ControlError::corrupt)?,
            state: self.state,
            template_version: self.template_version,
            tenants: self.tenants,
            spares: self.spares,
            sslmode: self.config()?.sslmode(),
        })
    }
}

fn select(rest: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "SELECT {SERVER_COLUMNS} FROM database_servers s {rest}"
    ))
}

/// How a configured server differs from the registry's record of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerChange {
    pub id: ServerId,
    /// `added`, `changed` or `unchanged`.
    pub change: &'static str,
    /// For `changed`: the fields that differ, as `field: registry -> configuration`.
    pub fields: Vec<String>,
}

impl Store {
    /// Every server, in id order.
    pub async fn servers(&self) -> Result<Vec<Server>, ControlError> {
        self.run("servers", async {
            let rows = sqlx::query_as::<_, ServerRow>(select("ORDER BY s.id"))
                .fetch_all(self.pool())
                .await?;
            rows.iter().map(ServerRow::view).collect()
        })
        .await
    }

    pub async fn server(&self, id: &ServerId) -> Result<Option<Server>, ControlError> {
        self.run("server", async {
            sqlx::query_as::<_, ServerRow>(select("WHERE s.id = $1"))
                .bind(id.as_str())
                .fetch_optional(self.pool())
                .await?
                .as_ref()
                .map(ServerRow::view)
                .transpose()
        })
        .await
    }

    /// A server's connection settings as the registry records them (no password).
    pub(crate) async fn server_config(
        &self,
        id: &ServerId,
    ) -> Result<Option<ServerConfig>, ControlError> {
        self.run("server_config", async {
            sqlx::query_as::<_, ServerRow>(select("WHERE s.id = $1"))
                .bind(id.as_str())
                .fetch_optional(self.pool())
                .await?
                .as_ref()
                .map(ServerRow::config)
                .transpose()
        })
        .await
    }

    /// How the configured servers differ from the registry's records (servers only the registry
    /// knows, added through the API, are left out).
    pub async fn server_changes(
        &self,
        configured: &[ServerConfig],
    ) -> Result<Vec<ServerChange>, ControlError> {
        self.run("server_changes", async {
            let rows = sqlx::query_as::<_, ServerRow>(select("ORDER BY s.id"))
                .fetch_all(self.pool())
                .await?;
            configured
                .iter()
                .map(|want| {
                    let Some(row) = rows.iter().find(|r| r.id == want.id) else {
                        return Ok(ServerChange {
                            id: want.id.clone(),
                            change: "added",
                            fields: Vec::new(),
                        });
                    };
                    let have = row.config()?;
                    let (have_sslmode, want_sslmode) = (have.sslmode(), want.sslmode());
                    let mut fields = Vec::new();
                    let mut differ = |name: &str, have: String, want: String| {
                        if have != want {
                            fields.push(format!("{name}: {have} -> {want}"));
                        }
                    };
                    differ("region", have.region.to_string(), want.region.to_string());
                    differ("host", have.host, want.host.clone());
                    differ("port", have.port.to_string(), want.port.to_string());
                    differ("admin_user", have.admin_user, want.admin_user.clone());
                    differ(
                        "password_env",
                        have.password_env.unwrap_or_default(),
                        want.password_env.clone().unwrap_or_default(),
                    );
                    differ(
                        "admin_database",
                        have.admin_database,
                        want.admin_database.clone(),
                    );
                    differ(
                        "capacity",
                        have.capacity.to_string(),
                        want.capacity.to_string(),
                    );
                    differ(
                        "sslmode",
                        have_sslmode.to_string(),
                        want_sslmode.to_string(),
                    );
                    differ(
                        "ca",
                        have.ca_pem.as_ref().map_or("none", |_| "set").into(),
                        want.ca_pem.as_ref().map_or("none", |_| "set").into(),
                    );
                    Ok(ServerChange {
                        id: want.id.clone(),
                        change: if fields.is_empty() {
                            "unchanged"
                        } else {
                            "changed"
                        },
                        fields,
                    })
                })
                .collect()
        })
        .await
    }

    /// Records the configured servers (insert, or update their settings); a server's state is
    /// only set when it is new. Only the registry at start-up and `tenantctl servers sync` do
    /// this.
    pub async fn apply_configured_servers(
        &self,
        servers: &[ServerConfig],
        actor: &Actor,
    ) -> Result<(), ControlError> {
        self.run("apply_configured_servers", async {
            let mut tx = self.begin().await?;
            for s in servers {
                sqlx::query(
                    "INSERT INTO database_servers (id, region, host, port, admin_user, capacity, state,
                                                   password_env, admin_database, sslmode, ca_pem)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (id) DO UPDATE SET region = EXCLUDED.region, host = EXCLUDED.host,
                       port = EXCLUDED.port, admin_user = EXCLUDED.admin_user,
                       capacity = EXCLUDED.capacity, password_env = EXCLUDED.password_env,
                       admin_database = EXCLUDED.admin_database, sslmode = EXCLUDED.sslmode,
                       ca_pem = EXCLUDED.ca_pem, updated_at = now()",
                )
                .bind(s.id.as_str())
                .bind(s.region.as_str())
                .bind(&s.host)
                .bind(i32::from(s.port))
                .bind(&s.admin_user)
                .bind(i32::try_from(s.capacity).unwrap_or(i32::MAX))
                .bind(s.state.as_str())
                .bind(s.password_env.as_deref())
                .bind(&s.admin_database)
                .bind(s.sslmode.map(SslMode::as_str))
                .bind(s.ca_pem.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            if !servers.is_empty() {
                let ids: Vec<&str> = servers.iter().map(|s| s.id.as_str()).collect();
                audit(
                    &mut tx,
                    actor,
                    "server.sync",
                    None,
                    None,
                    Some(serde_json::json!({ "servers": ids })),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Records a new server (one not in the configuration file).
    pub async fn add_server(
        &self,
        server: &ServerConfig,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        self.run("add_server", async {
            let mut tx = self.begin().await?;
            sqlx::query(
                "INSERT INTO database_servers (id, region, host, port, admin_user, password_env,
                                               admin_database, capacity, state, sslmode, ca_pem)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(server.id.as_str())
            .bind(server.region.as_str())
            .bind(&server.host)
            .bind(i32::from(server.port))
            .bind(&server.admin_user)
            .bind(server.password_env.as_deref())
            .bind(&server.admin_database)
            .bind(i32::try_from(server.capacity).unwrap_or(i32::MAX))
            .bind(server.state.as_str())
            .bind(server.sslmode.map(SslMode::as_str))
            .bind(server.ca_pem.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                let e = ControlError::from(e);
                if is_unique_violation(&e, "database_servers_pkey") {
                    ControlError::conflict(
                        ErrorCode::ServerExists,
                        format!("server {} already exists", server.id),
                    )
                } else {
                    e
                }
            })?;
            audit(
                &mut tx,
                actor,
                "server.add",
                None,
                None,
                Some(
                    serde_json::json!({"server_id": server.id, "region": server.region,
                    "host": server.host, "port": server.port, "capacity": server.capacity}),
                ),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Forgets a server that was never prepared (no template there, so nothing of any tenant
    /// either): a registration that named the wrong host, say. One that was prepared is
    /// refused (`invalid_state`): drain it and take it out of service instead.
    pub async fn delete_server(&self, id: &ServerId, actor: &Actor) -> Result<(), ControlError> {
        self.run("delete_server", async {
            let mut tx = self.begin().await?;
            let prepared: Option<Option<i32>> = sqlx::query_scalar(
                "SELECT template_version FROM database_servers WHERE id = $1 FOR UPDATE",
            )
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            match prepared {
                None => {
                    return Err(ControlError::NotFound {
                        what: format!("server {id}"),
                    });
                }
                Some(Some(version)) => {
                    return Err(ControlError::conflict(
                        ErrorCode::InvalidState,
                        format!(
                            "server {id} was prepared (its template is at version {version}) and \
                             may hold tenants' data: drain it instead"
                        ),
                    ));
                }
                Some(None) => {}
            }
            sqlx::query("DELETE FROM database_servers WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    ControlError::conflict(
                        ErrorCode::InvalidState,
                        format!("server {id} is still referred to: {e}"),
                    )
                })?;
            audit(
                &mut tx,
                actor,
                "server.delete",
                None,
                None,
                Some(serde_json::json!({ "server_id": id })),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Asks that a registry replica activate the server once it has connected to it itself
    /// (see [`Store::activations_requested`]); the server stays as it is until then.
    pub async fn request_activation(
        &self,
        id: &ServerId,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        self.run("request_activation", async {
            let mut tx = self.begin().await?;
            let done = sqlx::query(
                "UPDATE database_servers SET activation_requested_at = now(), updated_at = now()
                 WHERE id = $1",
            )
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(ControlError::NotFound {
                    what: format!("server {id}"),
                });
            }
            let server = serde_json::json!({"server_id": id});
            commit_audited(
                tx,
                actor,
                "server.activation_requested",
                None,
                None,
                Some(server),
            )
            .await
        })
        .await
    }

    /// The other server whose record names `env` as its password variable, if any.
    pub async fn server_with_password_env(
        &self,
        env: &str,
        besides: &ServerId,
    ) -> Result<Option<ServerId>, ControlError> {
        self.run("server_with_password_env", async {
            let id: Option<String> = sqlx::query_scalar(
                "SELECT id FROM database_servers WHERE password_env = $1 AND id <> $2 LIMIT 1",
            )
            .bind(env)
            .bind(besides.as_str())
            .fetch_optional(self.pool())
            .await?;
            id.map(|id| id.parse().map_err(ControlError::corrupt))
                .transpose()
        })
        .await
    }

    /// Servers a tool asked a registry replica to activate: prepared, not active yet.
    pub async fn activations_requested(&self) -> Result<Vec<ServerId>, ControlError> {
        self.run("activations_requested", async {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM database_servers
                 WHERE activation_requested_at IS NOT NULL AND state <> 'active'
                   AND template_version IS NOT NULL
                 ORDER BY id",
            )
            .fetch_all(self.pool())
            .await?;
            parse_all(ids)
        })
        .await
    }

    pub async fn set_server_state(
        &self,
        id: &ServerId,
        state: ServerState,
        actor: &Actor,
    ) -> Result<(), ControlError> {
        self.run("set_server_state", async {
            let mut tx = self.begin().await?;
            let before: Option<String> =
                sqlx::query_scalar("SELECT state FROM database_servers WHERE id = $1 FOR UPDATE")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(before) = before else {
                return Err(ControlError::NotFound {
                    what: format!("server {id}"),
                });
            };
            // Active now: no request for a registry to activate it is left open.
            sqlx::query(
                "UPDATE database_servers SET state = $2, updated_at = now(),
                        activation_requested_at = CASE WHEN $2 = 'active' THEN NULL
                                                       ELSE activation_requested_at END
                 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(state.as_str())
            .execute(&mut *tx)
            .await?;
            commit_audited(
                tx,
                actor,
                "server.set_state",
                None,
                Some(serde_json::json!({"server_id": id, "state": before})),
                Some(serde_json::json!({"server_id": id, "state": state})),
            )
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn set_template_version(
        &self,
        id: &ServerId,
        version: Option<i32>,
    ) -> Result<(), ControlError> {
        self.run("set_template_version", async {
            let mut tx = self.begin().await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT pg_advisory_xact_lock({TEMPLATE_VERSION_LOCK})"
            )))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE database_servers SET template_version = $2, updated_at = now() WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(version)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
