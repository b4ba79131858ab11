//! PostgreSQL administration on one database server: the template, tenant roles and databases.
//! Every function is idempotent (safe to run again after a crash at any point). DDL goes through
//! the simple query protocol (`raw_sql`): it cannot take bind parameters, and names are quoted by
//! [`crate::sql`].
//!
//! Isolation, as built here:
//! - a tenant database is created with `ALLOW_CONNECTIONS false` and opened only by the lockdown,
//!   after PUBLIC lost `CONNECT` and the tenant's own role got it, so there is never a moment
//!   another role can connect;
//! - a tenant role holds privileges in its own database only, granted to it directly (mirroring
//!   what the template grants the `tenancy_app` role, which has no members);
//! - every database and role the engine creates carries its tenant's `org_id` in a comment, and
//!   one tagged for another tenant (or not at all) is never adopted.

mod moves;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, Row};
use tenancy_core::{DbName, ErrorCode, OrgId, RoleName, ServerId, SslMode};
use tracing::{info, instrument};

use crate::config::{ServerConfig, TierLimits};
use crate::error::ControlError;
use crate::migrate;
use crate::secrets::scram_verifier;
use crate::sql::{ddl, ident, literal};

pub use moves::{
    MOVE_REPLICATION_PREFIX, ServerFacts, TableChecksums, moved_tag, replication_name,
    retained_name,
};

/// NOLOGIN role the template grants its privileges to. It has no members: each tenant role gets
/// the same privileges in its own database only.
pub const APP_GROUP_ROLE: &str = "tenancy_app";

/// How every comment the engine tags a database or role with starts (a tenant's, a spare's, a
/// moved copy's).
const TAG_PREFIX: &str = "tenancy:";

/// The comment every spare database of the warm pool carries until it is claimed.
pub const SPARE_TAG: &str = "tenancy:spare";

/// The SQLSTATE (one of our own) of a claim that finds the spare not whole (see
/// `ServerAdmin::adopt_spare`).
const NOT_A_WHOLE_SPARE: &str = "TS001";

/// The SQLSTATE (one of our own) of an opening that finds the database tagged for someone else
/// (see `ServerAdmin::open_to`).
const NOT_THE_TENANTS: &str = "TS002";

/// Says goodbye to the server off the caller's path: nothing waits for a verification's
/// connection to close.
fn close_in_background(conn: PgConnection) {
    tokio::spawn(async move {
        let _ = conn.close().await;
    });
}

/// The comment every tenant database and role carries: `tenancy:org_id=<org_id>`.
pub fn tag(org_id: &OrgId) -> String {
    format!("tenancy:org_id={org_id}")
}

/// The organization a comment tags, if it is a tag.
pub fn tagged_org(comment: Option<&str>) -> Option<&str> {
    comment.and_then(|c| c.strip_prefix("tenancy:org_id="))
}

/// A `tenant_*` database as the server shows it.
#[derive(Debug, Clone)]
pub struct DatabaseFacts {
    pub name: String,
    pub allow_connections: bool,
    pub tag: Option<String>,
}

/// A `tenant_*` role as the server shows it.
#[derive(Debug, Clone)]
pub struct RoleFacts {
    pub name: String,
    pub can_login: bool,
    /// Superuser, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS.
    pub privileged: bool,
    pub connection_limit: i32,
    /// Member of another role (the app role of the older model, or anything else).
    pub member_of_any: bool,
    pub tag: Option<String>,
}

/// Everything the reconciler compares with the registry, read in a few queries per server.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub databases: HashMap<String, DatabaseFacts>,
    pub roles: HashMap<String, RoleFacts>,
    /// SCRAM verifiers by role; `None` when the admin user may not read them (not a superuser).
    pub verifiers: Option<HashMap<String, String>>,
    /// Open sessions by (database, role).
    pub sessions: HashMap<(String, String), i64>,
}

/// An admin session inside one database and the schema version read there (see
/// [`ServerAdmin::app_session`]).
pub struct AppSession {
    admin: ServerAdmin,
    conn: PgConnection,
    version: Option<i32>,
}

impl AppSession {
    /// The database's schema version, read when the session began.
    pub fn version(&self) -> Option<i32> {
        self.version
    }

    /// Grants `role` the app's privileges in the database (see
    /// [`ServerAdmin::grant_app_privileges`]), then ends the session.
    #[instrument(skip(self), fields(server_id = %self.admin.id))]
    pub async fn grant(mut self, role: &RoleName) -> Result<(), ControlError> {
        let granted = self
            .admin
            .grant_app_privileges_on(&mut self.conn, self.version, role)
            .await;
        close_in_background(self.conn);
        granted
    }
}

/// Admin connections to one database server.
#[derive(Clone)]
pub struct ServerAdmin {
    id: ServerId,
    config: ServerConfig,
    pool: PgPool,
    /// A few connections of their own for read-only probes (usage, health), so callers polling
    /// them can never take the connections operations need.
    probes: PgPool,
    /// What each template version grants the app role (see [`Self::grant_app_privileges`]).
    app_grants: AppGrants,
}

/// The statements that mirror the app role's privileges, per template version, each lacking only
/// its grantee (`GRANT ... TO `). A version's privileges are those its migrations give, the
/// same in every clone of it: read once from the first clone, not from each new one (a cold
/// session in a fresh clone spends more on that catalog read than on the grants).
#[derive(Clone, Default)]
struct AppGrants(Arc<Mutex<HashMap<i32, Arc<[String]>>>>);

impl AppGrants {
    fn get(&self, version: i32) -> Option<Arc<[String]>> {
        self.0
            .lock()
            .expect("app grants lock")
            .get(&version)
            .cloned()
    }

    fn remember(&self, version: i32, grants: Arc<[String]>) {
        self.0
            .lock()
            .expect("app grants lock")
            .insert(version, grants);
    }
}

/// Connections of the probe pool, and how long a probe waits for one.
const PROBE_CONNECTIONS: u32 = 2;
const PROBE_WAIT: Duration = Duration::from_secs(2);

impl ServerAdmin {
    /// Builds the pool lazily: a server that is down at start-up does not stop the engine; its
    /// operations retry until it is back.
    pub fn new(config: &ServerConfig, max_connections: u32) -> Result<Self, ControlError> {
        if config.password.is_none() {
            return Err(ControlError::Config(format!(
                "server {}: no admin password (set password_env and export it)",
                config.id
            )));
        }
        let options = Self::options_for(config, &config.admin_database);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options.clone());
        let probes = PgPoolOptions::new()
            .max_connections(PROBE_CONNECTIONS)
            .acquire_timeout(PROBE_WAIT)
            .connect_lazy_with(options);
        Ok(Self {
            id: config.id.clone(),
            config: config.clone(),
            pool,
            probes,
            app_grants: AppGrants::default(),
        })
    }

    fn options_for(config: &ServerConfig, dbname: &str) -> PgConnectOptions {
        let mut options = with_tls(PgConnectOptions::new(), config)
            .host(&config.host)
            .port(config.port)
            .username(&config.admin_user)
            .database(dbname)
            .application_name("tenancy-control")
            // DDL carries SCRAM verifiers: keep it out of logs at every level.
            .disable_statement_logging();
        if let Some(password) = &config.password {
            options = options.password(password.expose_secret());
        }
        options
    }

    /// The TLS connector of this server's tokio-postgres connections (migrations).
    pub fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ControlError> {
        tenancy_pgtls::connector(self.config.sslmode(), self.config.ca_pem.as_deref())
            .map_err(|e| ControlError::Config(format!("server {}: {e}", self.id)))
    }

    /// Admin connection settings for one of this server's databases.
    pub fn options(&self, dbname: &str) -> PgConnectOptions {
        Self::options_for(&self.config, dbname)
    }

    pub fn id(&self) -> &ServerId {
        &self.id
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn err(&self) -> impl FnOnce(sqlx::Error) -> ControlError + '_ {
        ControlError::server(&self.id)
    }

    /// Connection settings for refinery (tokio-postgres) on one of this server's databases. The
    /// search path is `public` alone (with PostgreSQL's own catalog first, as always), so a
    /// migration never resolves a name through a schema someone else could write to.
    pub fn tokio_postgres_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.config.host)
            .port(self.config.port)
            .user(&self.config.admin_user)
            .dbname(dbname)
            .application_name("tenancy-migrate")
            .options("-c search_path=public")
            .ssl_mode(tenancy_pgtls::tokio_ssl_mode(self.config.sslmode()));
        if let Some(password) = &self.config.password {
            config.password(password.expose_secret());
        }
        config
    }

    async fn execute(&self, sql: String) -> Result<(), ControlError> {
        sqlx::raw_sql(ddl(sql))
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// Runs DDL inside one of this server's databases (not the maintenance database).
    async fn execute_in(&self, db: &str, sql: String) -> Result<(), ControlError> {
        let mut conn = PgConnection::connect_with(&self.options(db))
            .await
            .map_err(self.err())?;
        let result = sqlx::raw_sql(ddl(sql))
            .execute(&mut conn)
            .await
            .map_err(self.err());
        let _ = conn.close().await;
        result.map(drop)
    }

    /// Makes the server ready for tenants: the app role, `tenant_template` created, closed to
    /// PUBLIC and migrated to `target` (the latest when `None`); also how a fleet migration moves
    /// templates. An advisory lock keeps concurrent engines from preparing the same server at
    /// once. Returns the template's version.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn prepare(&self, target: Option<i32>) -> Result<i32, ControlError> {
        let mut conn = PgConnection::connect_with(&self.options(&self.config.admin_database))
            .await
            .map_err(self.err())?;
        sqlx::query("SELECT pg_advisory_lock(hashtext('tenancy.prepare'))")
            .execute(&mut conn)
            .await
            .map_err(self.err())?;
        let result = self.prepare_locked(&mut conn, target).await;
        // Closing the session releases the advisory lock, also when preparing failed.
        let _ = conn.close().await;
        result
    }

    async fn prepare_locked(
        &self,
        conn: &mut PgConnection,
        target: Option<i32>,
    ) -> Result<i32, ControlError> {
        let group_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(APP_GROUP_ROLE)
                .fetch_one(&mut *conn)
                .await
                .map_err(self.err())?;
        if !group_exists {
            sqlx::raw_sql(ddl(format!(
                "CREATE ROLE {} NOLOGIN",
                ident(APP_GROUP_ROLE)
            )))
            .execute(&mut *conn)
            .await
            .map_err(self.err())?;
        }
        let template = DbName::template();
        if !self.database_exists(&template).await? {
            info!("creating the template database");
            sqlx::raw_sql(ddl(format!("CREATE DATABASE {}", ident(template.as_str()))))
                .execute(&mut *conn)
                .await
                .map_err(self.err())?;
        }
        // Tenant roles may connect to their own database only: PUBLIC loses CONNECT on every
        // database of the server that is not a tenant's (the maintenance databases, template1,
        // the template, the registry's when it lives here).
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database
             WHERE datallowconn AND (datname NOT LIKE 'tenant\\_%' OR datname = 'tenant_template')",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(self.err())?;
        let revokes: String = others
            .iter()
            .map(|db| {
                format!(
                    "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC;\n",
                    ident(db)
                )
            })
            .collect();
        sqlx::raw_sql(ddl(revokes))
            .execute(&mut *conn)
            .await
            .map_err(self.err())?;
        // Older PostgreSQL versions let PUBLIC create in schema public; clones inherit the
        // template's schema privileges.
        self.execute_in(
            template.as_str(),
            format!(
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
                 ALTER SCHEMA public OWNER TO {};",
                ident(&self.config.admin_user)
            ),
        )
        .await?;
        self.migrate(template.as_str(), target).await
    }

    /// Migrates a database of this server (the template or a tenant's) to `target` (the latest
    /// when `None`); returns its version afterwards.
    pub async fn migrate(&self, db: &str, target: Option<i32>) -> Result<i32, ControlError> {
        migrate::migrate_schema(&self.tokio_postgres_config(db), self.tls()?, target).await
    }

    pub async fn database_exists(&self, db: &DbName) -> Result<bool, ControlError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(db.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())
    }

    /// The role's tag, or `None` when the role does not exist (`Some(None)`: exists, untagged).
    async fn role_tag(&self, role: &RoleName) -> Result<Option<Option<String>>, ControlError> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        )
        .bind(role.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(row.map(|(tag,)| tag))
    }

    /// Creates the tenant's role (tagged with its organization), or brings the existing one, if
    /// it is this tenant's, back to the wanted attributes: LOGIN or not, no superuser, no
    /// CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS, member of nothing, the tier's limits, the
    /// password (as a SCRAM verifier). A role of that name that is not this tenant's is refused.
    #[instrument(skip(self, password), fields(server_id = %self.id))]
    pub async fn ensure_role(
        &self,
        role: &RoleName,
        password: &SecretString,
        limits: &TierLimits,
        org_id: &OrgId,
        login: bool,
    ) -> Result<(), ControlError> {
        let r = ident(role.as_str());
        let attributes = role_attributes(login, limits, password);
        let create = match self.role_tag(role).await? {
            None => format!(
                "CREATE ROLE {r} WITH {attributes};
                 COMMENT ON ROLE {r} IS {};",
                literal(&tag(org_id))
            ),
            Some(existing) if tagged_org(existing.as_deref()) == Some(org_id.as_str()) => {
                format!("ALTER ROLE {r} WITH {attributes};")
            }
            Some(existing) => {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!(
                        "role {role} exists on server {} and is not tenant {org_id}'s ({}); it is \
                         never adopted: drop or rename it, then retry",
                        self.id,
                        existing.map_or_else(|| "untagged".to_owned(), |t| format!("tagged {t}"))
                    ),
                ));
            }
        };
        // One implicit transaction: the role is never there without its tag.
        self.execute(format!(
            "{create}
             {revokes}
             {settings}",
            revokes = revoke_memberships(role),
            settings = role_settings(&r, limits),
        ))
        .await
    }

    /// Gives an existing role a new password (as a SCRAM verifier), nothing else.
    #[instrument(skip(self, password), fields(server_id = %self.id))]
    pub async fn set_password(
        &self,
        role: &RoleName,
        password: &SecretString,
    ) -> Result<(), ControlError> {
        self.execute(format!(
            "ALTER ROLE {} PASSWORD {}",
            ident(role.as_str()),
            literal(&scram_verifier(password))
        ))
        .await
    }

    /// Applies a tier's limits to an existing role without touching its login state.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn apply_limits(
        &self,
        role: &RoleName,
        limits: &TierLimits,
    ) -> Result<(), ControlError> {
        let r = ident(role.as_str());
        self.execute(format!(
            "ALTER ROLE {r} CONNECTION LIMIT {limit};
             {settings}",
            limit = limits.connection_limit,
            settings = role_settings(&r, limits),
        ))
        .await
    }

    /// Whether a database exists, asked on the probe pool.
    pub async fn probe_database(&self, db: &DbName) -> Result<bool, ControlError> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(db.as_str())
            .fetch_one(&self.probes)
            .await
            .map_err(self.err())
    }

    /// Size in bytes of a database and the sessions connected to it, asked on the probe pool.
    pub async fn usage(&self, db: &DbName) -> Result<(i64, i64), ControlError> {
        sqlx::query_as(
            "SELECT pg_database_size(datname), (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname)
             FROM pg_database d WHERE datname = $1",
        )
        .bind(db.as_str())
        .fetch_optional(&self.probes)
        .await
        .map_err(self.err())?
        .ok_or_else(|| ControlError::NotFound { what: format!("database {db} on server {}", self.id) })
    }

    /// Size and open sessions of every tenant database on the server, in one query (the usage
    /// sampler's round asks each server once, whatever its number of tenants).
    pub async fn sample_usage(&self) -> Result<Vec<(String, i64, i64)>, ControlError> {
        sqlx::query_as(
            "SELECT d.datname::text, pg_database_size(d.oid), coalesce(a.sessions, 0)
             FROM pg_database d
             LEFT JOIN (SELECT datid, count(*) AS sessions FROM pg_stat_activity GROUP BY datid) a
                 ON a.datid = d.oid
             WHERE d.datname LIKE 'tenant\\_%' AND d.datname <> 'tenant_template'",
        )
        .fetch_all(&self.probes)
        .await
        .map_err(self.err())
    }

    /// Makes the tenant's database read-only for its role (`default_transaction_read_only` on
    /// the role and the database) and ends the role's sessions, so they reconnect read-only; or
    /// undoes that. Idempotent.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn set_read_only(
        &self,
        db: &DbName,
        role: &RoleName,
        read_only: bool,
    ) -> Result<(), ControlError> {
        let (d, r) = (ident(db.as_str()), ident(role.as_str()));
        let change = if read_only {
            "SET default_transaction_read_only = on"
        } else {
            "RESET default_transaction_read_only"
        };
        self.execute(format!(
            "ALTER ROLE {r} {change};
             ALTER DATABASE {d} {change};"
        ))
        .await?;
        if read_only {
            self.terminate_sessions(db, role).await?;
        }
        Ok(())
    }

    /// Clones the template into `db`, closed to every connection until [`Self::open_to`]
    /// tags it and opens it to the tenant. A repeated step finds the database there: it takes
    /// it when it is the tenant's (tagged for it, or untagged and still closed: a clone that
    /// was never opened) and refuses any other. Returns whether this call made the clone.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn create_database(&self, db: &DbName, org_id: &OrgId) -> Result<bool, ControlError> {
        let created = self
            .execute(format!(
                "CREATE DATABASE {} TEMPLATE {} ALLOW_CONNECTIONS false",
                ident(db.as_str()),
                ident(DbName::template().as_str())
            ))
            .await;
        match created {
            Ok(()) => Ok(true),
            // A repeat, or another worker (one whose lease we took over) created it meanwhile.
            Err(e) if e.is_server_sqlstate("42P04") => {
                let existing = self.database_facts(db).await?.ok_or_else(|| {
                    ControlError::Corrupt(format!("database {db} exists and then does not"))
                })?;
                self.take_existing(db, org_id, existing)
                    .await
                    .map(|()| false)
            }
            Err(e) => Err(e),
        }
    }

    /// Clones the template into the spare `name`, with a role of the same name (NOLOGIN) that
    /// gets the template's privileges inside it now, so that a claim only renames both. The
    /// database is closed to every connection but the admin's while the privileges are
    /// mirrored, and to all after; PUBLIC has no grant on it; both are tagged as a spare.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn clone_spare(&self, name: &DbName) -> Result<(), ControlError> {
        let role: RoleName = name.as_str().parse().map_err(ControlError::corrupt)?;
        let (d, r, tag) = (
            ident(name.as_str()),
            ident(role.as_str()),
            literal(SPARE_TAG),
        );
        self.execute(format!(
            "CREATE ROLE {r} NOLOGIN; COMMENT ON ROLE {r} IS {tag};"
        ))
        .await?;
        self.execute(format!(
            "CREATE DATABASE {d} TEMPLATE {} ALLOW_CONNECTIONS false",
            ident(DbName::template().as_str())
        ))
        .await?;
        self.execute(format!(
            "REVOKE ALL ON DATABASE {d} FROM PUBLIC; COMMENT ON DATABASE {d} IS {tag};
             ALTER DATABASE {d} ALLOW_CONNECTIONS true;"
        ))
        .await?;
        self.grant_app_privileges(name, &role).await?;
        self.execute(format!("ALTER DATABASE {d} ALLOW_CONNECTIONS false"))
            .await
    }

    /// Whether a role of this name exists on the server.
    pub async fn role_exists(&self, role: &RoleName) -> Result<bool, ControlError> {
        Ok(self.role_tag(role).await?.is_some())
    }

    /// Drops a spare and its role.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn drop_spare(&self, name: &DbName) -> Result<(), ControlError> {
        self.drop_database(name).await?;
        self.execute(format!("DROP ROLE IF EXISTS {}", ident(name.as_str())))
            .await
    }

    /// Makes a claimed spare the tenant's, in one transaction: its role tagged for the tenant,
    /// renamed to the tenant's and given the tenant's login, password and limits; its database
    /// tagged, renamed to the tenant's, closed to PUBLIC and opened to the role (who has the
    /// template's privileges inside since the spare was made). A spare never had a session to
    /// end: it never allowed connections. Returns `false`, changing nothing, unless the spare's
    /// database and role are there, tagged as a spare, and nothing of the tenant's is: a claim
    /// half done by a step of an older version (or a spare without a role) goes step by step.
    #[instrument(skip(self, password, limits), fields(server_id = %self.id))]
    pub async fn adopt_spare(
        &self,
        spare: &DbName,
        tenant: (&DbName, &RoleName),
        password: &SecretString,
        limits: &TierLimits,
        org_id: &OrgId,
    ) -> Result<bool, ControlError> {
        let (db, role) = tenant;
        let spare_role: RoleName = spare.as_str().parse().map_err(ControlError::corrupt)?;
        let (sd, sr, d, r) = (
            ident(spare.as_str()),
            ident(spare_role.as_str()),
            ident(db.as_str()),
            ident(role.as_str()),
        );
        // The check runs first in the same transaction: no round trip of its own.
        let adopted = self
            .execute(format!(
                "DO $check$ BEGIN
                   IF (SELECT count(*) FROM pg_database WHERE datname IN ({sd_name}, {d_name})) <> 1
                      OR NOT EXISTS (SELECT FROM pg_database WHERE datname = {sd_name}
                                     AND shobj_description(oid, 'pg_database') = {spare_tag})
                      OR (SELECT count(*) FROM pg_roles WHERE rolname IN ({sr_name}, {r_name})) <> 1
                      OR NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {sr_name}
                                     AND shobj_description(oid, 'pg_authid') = {spare_tag})
                   THEN RAISE EXCEPTION 'not a whole spare' USING ERRCODE = '{NOT_A_WHOLE_SPARE}';
                   END IF;
                 END $check$;
             COMMENT ON ROLE {sr} IS {tag};
             ALTER ROLE {sr} RENAME TO {r};
             ALTER ROLE {r} WITH {attributes};
             {revokes}
             {settings}
             COMMENT ON DATABASE {sd} IS {tag};
             ALTER DATABASE {sd} RENAME TO {d};
             REVOKE ALL ON DATABASE {d} FROM PUBLIC;
             GRANT CONNECT, TEMPORARY ON DATABASE {d} TO {r};
             ALTER DATABASE {d} ALLOW_CONNECTIONS true;",
                sd_name = literal(spare.as_str()),
                d_name = literal(db.as_str()),
                sr_name = literal(spare_role.as_str()),
                r_name = literal(role.as_str()),
                spare_tag = literal(SPARE_TAG),
                tag = literal(&tag(org_id)),
                attributes = role_attributes(true, limits, password),
                revokes = revoke_memberships(role),
                settings = role_settings(&r, limits),
            ))
            .await;
        match adopted {
            Ok(()) => Ok(true),
            Err(e) if e.is_server_sqlstate(NOT_A_WHOLE_SPARE) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes the claimed spare's role the tenant's role: tagged for the tenant, then renamed,
    /// in one transaction. Nothing to do when the tenant's role exists (a repeated step) or the
    /// spare's role is gone.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn adopt_spare_role(
        &self,
        spare: &DbName,
        role: &RoleName,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        let spare_role: RoleName = spare.as_str().parse().map_err(ControlError::corrupt)?;
        if self.role_tag(role).await?.is_some() || self.role_tag(&spare_role).await?.is_none() {
            return Ok(());
        }
        self.execute(format!(
            "COMMENT ON ROLE {s} IS {tag}; ALTER ROLE {s} RENAME TO {r};",
            s = ident(spare_role.as_str()),
            r = ident(role.as_str()),
            tag = literal(&tag(org_id)),
        ))
        .await
    }

    /// Makes the claimed spare the tenant's database: tagged for the tenant, then renamed. Safe
    /// to repeat: a spare already renamed is the tenant's database, tagged for it.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn adopt_spare_database(
        &self,
        spare: &DbName,
        db: &DbName,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        if self.database_facts(spare).await?.is_some() {
            self.tag(Some(spare), None, org_id).await?;
            self.execute(format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(spare.as_str()),
                ident(db.as_str())
            ))
            .await?;
        }
        match self.database_facts(db).await? {
            Some((_, tag)) if tagged_org(tag.as_deref()) == Some(org_id.as_str()) => Ok(()),
            _ => Err(ControlError::Corrupt(format!(
                "spare {spare} was claimed for tenant {org_id} but neither it nor {db} is there"
            ))),
        }
    }

    /// The server's spare databases (`spare_*`): whether each allows connections and whether
    /// PUBLIC may connect to it (a spare must allow neither).
    pub async fn spare_databases(&self) -> Result<Vec<(String, bool, bool)>, ControlError> {
        sqlx::query_as(
            "SELECT datname::text, datallowconn, has_database_privilege('public', oid, 'CONNECT')
             FROM pg_database WHERE datname LIKE 'spare\\_%'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())
    }

    /// Whether the database allows connections, and its tag, if it exists.
    async fn database_facts(
        &self,
        db: &DbName,
    ) -> Result<Option<(bool, Option<String>)>, ControlError> {
        sqlx::query_as(
            "SELECT datallowconn, shobj_description(oid, 'pg_database') FROM pg_database
             WHERE datname = $1",
        )
        .bind(db.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(self.err())
    }

    /// An existing database of the tenant's name: its own (tagged for it, or untagged and still
    /// closed, as [`Self::create_database`] leaves it until it is opened) or refused.
    async fn take_existing(
        &self,
        db: &DbName,
        org_id: &OrgId,
        (allow_connections, tag): (bool, Option<String>),
    ) -> Result<(), ControlError> {
        match tag {
            Some(tag) if tagged_org(Some(&tag)) == Some(org_id.as_str()) => Ok(()),
            None if !allow_connections => Ok(()),
            tag => Err(ControlError::conflict(
                ErrorCode::InvalidState,
                format!(
                    "database {db} exists on server {} and is not tenant {org_id}'s ({}); it is \
                     never adopted: drop or rename it, then retry",
                    self.id,
                    tag.map_or_else(|| "untagged".to_owned(), |t| format!("tagged {t}"))
                ),
            )),
        }
    }

    /// Makes the database the tenant's alone: see [`Self::open_to`] and
    /// [`Self::grant_app_privileges`]; then ends the sessions of anyone but the role and the
    /// admin.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn lockdown(
        &self,
        db: &DbName,
        role: &RoleName,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        self.open_to(db, role, org_id).await?;
        self.grant_app_privileges(db, role).await?;
        self.end_other_sessions(db, role).await
    }

    /// Opens the database to the tenant's role alone, in one transaction: tagged for the tenant,
    /// PUBLIC loses every privilege on it, the role gets CONNECT and TEMPORARY and loses any
    /// membership, then connections are allowed (so no other role can ever connect). A database
    /// tagged for anyone else is refused, changing nothing. Inside, the role has no privilege
    /// yet but what it was given there before (see [`Self::grant_app_privileges`]).
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn open_to(
        &self,
        db: &DbName,
        role: &RoleName,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        let (d, r, tag) = (
            ident(db.as_str()),
            ident(role.as_str()),
            literal(&tag(org_id)),
        );
        let opened = self
            .execute(format!(
                "DO $check$ BEGIN
                   IF coalesce(shobj_description((SELECT oid FROM pg_database WHERE datname = {name}),
                                                 'pg_database'), {tag}) <> {tag}
                   THEN RAISE EXCEPTION 'tagged for someone else' USING ERRCODE = '{NOT_THE_TENANTS}';
                   END IF;
                 END $check$;
                 COMMENT ON DATABASE {d} IS {tag};
                 REVOKE ALL ON DATABASE {d} FROM PUBLIC;
                 GRANT CONNECT, TEMPORARY ON DATABASE {d} TO {r};
                 {memberships}
                 ALTER DATABASE {d} ALLOW_CONNECTIONS true;",
                name = literal(db.as_str()),
                memberships = revoke_memberships(role)
            ))
            .await;
        match opened {
            Err(e) if e.is_server_sqlstate(NOT_THE_TENANTS) => Err(ControlError::conflict(
                ErrorCode::InvalidState,
                format!(
                    "database {db} on server {} is tagged for someone else than tenant {org_id}; \
                     it is never opened to it",
                    self.id
                ),
            )),
            other => other,
        }
    }

    /// Inside the database, grants the role every privilege the template grants the app role
    /// (on schemas, tables, sequences and routines, and the same default privileges for objects
    /// that later migrations create), all in one transaction. See [`Self::app_session`] and
    /// [`AppSession::grant`], its two halves.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn grant_app_privileges(
        &self,
        db: &DbName,
        role: &RoleName,
    ) -> Result<(), ControlError> {
        self.app_session(db).await?.grant(role).await
    }

    /// An admin session inside the database, for granting a role the app's privileges there,
    /// and the schema version read there first (which says what the app role is granted).
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn app_session(&self, db: &DbName) -> Result<AppSession, ControlError> {
        let mut conn = PgConnection::connect_with(&self.options(db.as_str()))
            .await
            .map_err(self.err())?;
        let version = sqlx::raw_sql("SELECT max(version) FROM public.refinery_schema_history")
            .fetch_one(&mut conn)
            .await
            .and_then(|row| row.try_get(0));
        match version {
            Ok(version) => Ok(AppSession {
                admin: self.clone(),
                conn,
                version,
            }),
            Err(e) => {
                close_in_background(conn);
                Err(self.err()(e))
            }
        }
    }

    /// The grants of [`Self::grant_app_privileges`] on `conn`, a session in the database at
    /// `version`: the statements of that version, read from the database's catalogs the first
    /// time only.
    async fn grant_app_privileges_on(
        &self,
        conn: &mut PgConnection,
        version: Option<i32>,
        role: &RoleName,
    ) -> Result<(), ControlError> {
        let grants = match version.and_then(|v| self.app_grants.get(v)) {
            Some(known) => known,
            None => {
                let read: Arc<[String]> = sqlx::raw_sql(ddl(app_grants_query()))
                    .fetch_all(&mut *conn)
                    .await
                    .and_then(|rows| rows.iter().map(|row| row.try_get(0)).collect())
                    .map_err(self.err())?;
                if let Some(version) = version {
                    self.app_grants.remember(version, read.clone());
                }
                read
            }
        };
        if !grants.is_empty() {
            let grantee = ident(role.as_str());
            let batch: String = grants.iter().map(|g| format!("{g}{grantee};\n")).collect();
            // One batch of the simple protocol: one implicit transaction, all or nothing.
            sqlx::raw_sql(ddl(batch))
                .execute(&mut *conn)
                .await
                .map_err(self.err())?;
        }
        Ok(())
    }

    /// Ends the sessions in the database of anyone but the role and the admin.
    pub async fn end_other_sessions(
        &self,
        db: &DbName,
        role: &RoleName,
    ) -> Result<(), ControlError> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND usename NOT IN ($2, current_user) AND pid <> pg_backend_pid()",
        )
        .bind(db.as_str())
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(())
    }

    /// Refuses new connections of the tenant role and ends its open sessions, returning once none
    /// is left (see [`Self::end_sessions`]). Missing role or database (a tenant that never
    /// finished provisioning) is not an error.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn block(&self, db: &DbName, role: &RoleName) -> Result<(), ControlError> {
        if self.role_tag(role).await?.is_some() {
            self.execute(format!("ALTER ROLE {} NOLOGIN", ident(role.as_str())))
                .await?;
            if self.database_exists(db).await? {
                self.execute(format!(
                    "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM {}",
                    ident(db.as_str()),
                    ident(role.as_str())
                ))
                .await?;
            }
        }
        self.end_sessions(db, role).await.map(drop)
    }

    /// Ends the role's sessions in the database and waits until none is left, for a role that
    /// may no longer connect. Signalling a session does not end it at once: it may still finish
    /// a commit, and one that logged in just before the refusal shows a moment later. A move's
    /// cutover reads the source's WAL position next and must see neither. Done when two rounds
    /// in a row, 10 ms apart, find no session; returns how many sessions it signalled.
    pub async fn end_sessions(&self, db: &DbName, role: &RoleName) -> Result<i64, ControlError> {
        const WAIT: Duration = Duration::from_secs(10);
        let started = std::time::Instant::now();
        let (mut quiet_rounds, mut ended) = (0, 0);
        loop {
            let signalled = self.terminate_sessions(db, role).await?;
            ended += signalled;
            quiet_rounds = if signalled == 0 { quiet_rounds + 1 } else { 0 };
            if quiet_rounds == 2 {
                return Ok(ended);
            }
            if started.elapsed() > WAIT {
                return Err(ControlError::Timeout(WAIT));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Signals the end to the role's sessions in the database; returns how many it signalled.
    async fn terminate_sessions(&self, db: &DbName, role: &RoleName) -> Result<i64, ControlError> {
        sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND usename = $2 AND pid <> pg_backend_pid()",
        )
        .bind(db.as_str())
        .bind(role.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(self.err())
    }

    /// Undoes [`Self::block`].
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn unblock(&self, db: &DbName, role: &RoleName) -> Result<(), ControlError> {
        self.execute(format!(
            "ALTER ROLE {r} LOGIN;
             GRANT CONNECT, TEMPORARY ON DATABASE {d} TO {r};
             ALTER DATABASE {d} ALLOW_CONNECTIONS true;",
            d = ident(db.as_str()),
            r = ident(role.as_str()),
        ))
        .await
    }

    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn drop_database(&self, db: &DbName) -> Result<(), ControlError> {
        self.execute(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(db.as_str())
        ))
        .await
    }

    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn drop_role(&self, role: &RoleName) -> Result<(), ControlError> {
        self.execute(format!("DROP ROLE IF EXISTS {}", ident(role.as_str())))
            .await
    }

    /// Tags an existing database and role with their tenant (deployments older than tags).
    pub async fn tag(
        &self,
        db: Option<&DbName>,
        role: Option<&RoleName>,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        let tag = literal(&tag(org_id));
        let mut sql = String::new();
        if let Some(db) = db {
            sql.push_str(&format!(
                "COMMENT ON DATABASE {} IS {tag};",
                ident(db.as_str())
            ));
        }
        if let Some(role) = role {
            sql.push_str(&format!(
                "COMMENT ON ROLE {} IS {tag};",
                ident(role.as_str())
            ));
        }
        self.execute(sql).await
    }

    /// Connects to the tenant database as the tenant role, proving it can, and nothing more.
    #[instrument(skip(self, password), fields(server_id = %self.id))]
    pub async fn verify_login(
        &self,
        db: &DbName,
        role: &RoleName,
        password: &SecretString,
    ) -> Result<(), ControlError> {
        close_in_background(self.tenant_login(db, role, password).await?);
        Ok(())
    }

    async fn tenant_login(
        &self,
        db: &DbName,
        role: &RoleName,
        password: &SecretString,
    ) -> Result<PgConnection, ControlError> {
        let options = self
            .tenant_options(db, role, password)
            .application_name("tenancy-verify");
        PgConnection::connect_with(&options)
            .await
            .map_err(self.err())
    }

    /// Connection settings for a tenant role on its database.
    pub fn tenant_options(
        &self,
        db: &DbName,
        role: &RoleName,
        password: &SecretString,
    ) -> PgConnectOptions {
        with_tls(PgConnectOptions::new(), &self.config)
            .host(&self.config.host)
            .port(self.config.port)
            .username(role.as_str())
            .password(password.expose_secret())
            .database(db.as_str())
    }

    /// The server's `tenant_*` databases and roles (the template excluded), their state, their
    /// sessions, and the roles' password verifiers when the admin may read them.
    pub async fn inventory(&self) -> Result<Inventory, ControlError> {
        let databases: Vec<(String, bool, Option<String>)> = sqlx::query_as(
            "SELECT datname, datallowconn, shobj_description(oid, 'pg_database') FROM pg_database
             WHERE datname LIKE 'tenant\\_%' AND datname <> 'tenant_template'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        let roles: Vec<(String, bool, bool, i32, bool, Option<String>)> = sqlx::query_as(
            "SELECT r.rolname, r.rolcanlogin,
                    r.rolsuper OR r.rolcreatedb OR r.rolcreaterole OR r.rolreplication OR r.rolbypassrls,
                    r.rolconnlimit,
                    EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid),
                    shobj_description(r.oid, 'pg_authid')
             FROM pg_roles r WHERE r.rolname LIKE 'tenant\\_%'",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        let sessions: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT datname, usename, count(*) FROM pg_stat_activity
             WHERE datname LIKE 'tenant\\_%' AND usename IS NOT NULL GROUP BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        // Only a superuser may read verifiers; without them passwords are not checked.
        let verifiers: Option<Vec<(String, Option<String>)>> = sqlx::query_as(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE 'tenant\\_%'",
        )
        .fetch_all(&self.pool)
        .await
        .ok();
        Ok(Inventory {
            databases: databases
                .into_iter()
                .map(|(name, allow_connections, tag)| {
                    let facts = DatabaseFacts {
                        name: name.clone(),
                        allow_connections,
                        tag,
                    };
                    (name, facts)
                })
                .collect(),
            roles: roles
                .into_iter()
                .map(
                    |(name, can_login, privileged, connection_limit, member_of_any, tag)| {
                        let facts = RoleFacts {
                            name: name.clone(),
                            can_login,
                            privileged,
                            connection_limit,
                            member_of_any,
                            tag,
                        };
                        (name, facts)
                    },
                )
                .collect(),
            verifiers: verifiers.map(|rows| {
                rows.into_iter()
                    .filter_map(|(role, verifier)| verifier.map(|v| (role, v)))
                    .collect()
            }),
            sessions: sessions
                .into_iter()
                .map(|(db, role, n)| ((db, role), n))
                .collect(),
        })
    }

    /// Whether each (role, database) pair has CONNECT (pairs whose role or database is missing
    /// are left out).
    pub async fn connect_privileges(
        &self,
        pairs: &[(RoleName, DbName)],
    ) -> Result<HashMap<(String, String), bool>, ControlError> {
        let roles: Vec<&str> = pairs.iter().map(|(r, _)| r.as_str()).collect();
        let dbs: Vec<&str> = pairs.iter().map(|(_, d)| d.as_str()).collect();
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT p.role, p.db, has_database_privilege(p.role, p.db, 'CONNECT')
             FROM unnest($1::text[], $2::text[]) AS p(role, db)
             WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p.role)
               AND EXISTS (SELECT 1 FROM pg_database WHERE datname = p.db)",
        )
        .bind(&roles)
        .bind(&dbs)
        .fetch_all(&self.pool)
        .await
        .map_err(self.err())?;
        Ok(rows
            .into_iter()
            .map(|(role, db, ok)| ((role, db), ok))
            .collect())
    }
}

/// sqlx's TLS settings for the server: its sslmode, and its CA when it has one.
fn with_tls(options: PgConnectOptions, config: &ServerConfig) -> PgConnectOptions {
    use sqlx::postgres::PgSslMode;
    let options = options.ssl_mode(match config.sslmode() {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    });
    match &config.ca_pem {
        Some(pem) => options.ssl_root_cert_from_pem(pem.as_bytes().to_vec()),
        None => options,
    }
}

/// The tier's session settings on a tenant role (`r` already quoted); a limit the tier leaves
/// unset is reset to the server's default. `temp_file_limit` is a superuser setting: the admin
/// must be a superuser, or have been granted `SET ON PARAMETER temp_file_limit`.
/// What `CREATE ROLE` or `ALTER ROLE` gives a tenant role: login or not, no privilege beyond
/// its own database, the tier's connection limit, the password as a SCRAM verifier.
fn role_attributes(login: bool, limits: &TierLimits, password: &SecretString) -> String {
    format!(
        "{} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT \
         CONNECTION LIMIT {} PASSWORD {}",
        if login { "LOGIN" } else { "NOLOGIN" },
        limits.connection_limit,
        literal(&scram_verifier(password)),
    )
}

fn role_settings(r: &str, limits: &TierLimits) -> String {
    let set_or_reset = |name: &str, value: Option<u128>| match value {
        Some(value) => format!("ALTER ROLE {r} SET {name} = {value};"),
        None => format!("ALTER ROLE {r} RESET {name};"),
    };
    [
        set_or_reset(
            "statement_timeout",
            Some(limits.statement_timeout.as_millis()),
        ),
        set_or_reset(
            "idle_in_transaction_session_timeout",
            limits.idle_in_transaction_timeout.map(|t| t.as_millis()),
        ),
        // In kB, PostgreSQL's unit for it.
        set_or_reset(
            "temp_file_limit",
            limits
                .temp_file_limit
                .map(|size| u128::from(size.as_u64() / 1024)),
        ),
    ]
    .join("\n")
}

/// Removes the role from every role it is a member of (the app role of the older model, or
/// anything granted by hand): a tenant role's privileges are its own.
fn revoke_memberships(role: &RoleName) -> String {
    format!(
        "DO $revoke$ DECLARE g text; BEGIN
           FOR g IN SELECT b.rolname FROM pg_auth_members m
                    JOIN pg_roles b ON b.oid = m.roleid JOIN pg_roles r ON r.oid = m.member
                    WHERE r.rolname = {role}
           LOOP EXECUTE format('REVOKE %I FROM %I', g, {role}); END LOOP;
         END $revoke$;",
        role = literal(role.as_str())
    )
}

/// Inside a tenant database: the statements that give a role every privilege the template
/// grants the app role, one per object (all its privileges at once), each ending in `TO ` for
/// the grantee. Names are the catalogs' own, quoted by `format('%I')`. What a tagged role (a
/// tenant's) granted the app role itself, on its temporary tables or through its own default
/// privileges, is not the template's: it is never mirrored (and never remembered for the
/// clones that follow).
fn app_grants_query() -> String {
    let ours = |grantor: &str| {
        format!(
            "coalesce(shobj_description({grantor}, 'pg_authid'), '') NOT LIKE {}",
            literal(&format!("{TAG_PREFIX}%"))
        )
    };
    format!(
        "SELECT format('GRANT %s ON SCHEMA %I TO ', string_agg(a.privilege_type, ', '), n.nspname)
         FROM pg_namespace n, aclexplode(n.nspacl) a
         WHERE a.grantee = to_regrole({app}) AND {granted}
         GROUP BY n.oid, n.nspname
         UNION ALL
         SELECT format('GRANT %s ON %s %I.%I TO ', string_agg(a.privilege_type, ', '),
                       CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
         WHERE a.grantee = to_regrole({app}) AND {granted}
         GROUP BY c.oid, c.relkind, n.nspname, c.relname
         UNION ALL
         SELECT format('GRANT %s ON ROUTINE %I.%I(%s) TO ', string_agg(a.privilege_type, ', '),
                       n.nspname, p.proname, pg_get_function_identity_arguments(p.oid))
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
         WHERE p.proacl IS NOT NULL AND a.grantee = to_regrole({app}) AND {granted}
         GROUP BY p.oid, n.nspname, p.proname
         UNION ALL
         SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I %s GRANT %s ON %s TO ',
                       pg_get_userbyid(d.defaclrole),
                       CASE WHEN d.defaclnamespace = 0 THEN ''
                            ELSE format('IN SCHEMA %I', n.nspname) END,
                       string_agg(a.privilege_type, ', '),
                       CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES'
                            WHEN 'f' THEN 'FUNCTIONS' WHEN 'T' THEN 'TYPES' ELSE 'SCHEMAS' END)
         FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace,
              aclexplode(d.defaclacl) a
         WHERE a.grantee = to_regrole({app}) AND {defaults}
         GROUP BY d.oid, d.defaclrole, d.defaclnamespace, n.nspname, d.defaclobjtype",
        app = literal(APP_GROUP_ROLE),
        granted = ours("a.grantor"),
        defaults = ours("d.defaclrole"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mirrored grants leave out those of roles whose comment starts with the prefix: every tag
    /// the engine writes must.
    #[test]
    fn every_tag_starts_with_the_prefix() {
        let org: OrgId = "4711".parse().unwrap();
        for written in [SPARE_TAG.to_owned(), tag(&org), moved_tag(&org)] {
            assert!(written.starts_with(TAG_PREFIX), "{written}");
        }
    }
}
