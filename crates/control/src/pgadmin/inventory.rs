//! What a server holds, for the reconciler to compare with the registry.

use std::collections::{BTreeSet, HashMap};

use tenancy_core::{DbName, RoleName};

use super::ServerAdmin;
use crate::error::ControlError;

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
    /// Its settings for every database (`name=value`, from `pg_db_role_setting`).
    pub settings: BTreeSet<String>,
    /// Its settings in one database, by database.
    pub database_settings: HashMap<String, BTreeSet<String>>,
}

/// A role's privileges on a database, as the reconciler compares them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatabasePrivileges {
    pub connect: bool,
    pub temporary: bool,
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

impl ServerAdmin {
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
        let settings: Vec<(String, Option<String>, Vec<String>)> = sqlx::query_as(
            "SELECT r.rolname, d.datname, s.setconfig FROM pg_db_role_setting s
             JOIN pg_roles r ON r.oid = s.setrole
             LEFT JOIN pg_database d ON d.oid = s.setdatabase
             WHERE r.rolname LIKE 'tenant\\_%'",
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
        let mut inventory = Inventory {
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
                            settings: BTreeSet::new(),
                            database_settings: HashMap::new(),
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
        };
        for (role, db, config) in settings {
            let Some(facts) = inventory.roles.get_mut(&role) else {
                continue;
            };
            let set = match db {
                Some(db) => facts.database_settings.entry(db).or_default(),
                None => &mut facts.settings,
            };
            set.extend(config);
        }
        Ok(inventory)
    }

    /// What each (role, database) pair may do on the database (pairs whose role or database is
    /// missing are left out).
    pub async fn database_privileges(
        &self,
        pairs: &[(RoleName, DbName)],
    ) -> Result<HashMap<(String, String), DatabasePrivileges>, ControlError> {
        let roles: Vec<&str> = pairs.iter().map(|(r, _)| r.as_str()).collect();
        let dbs: Vec<&str> = pairs.iter().map(|(_, d)| d.as_str()).collect();
        let rows: Vec<(String, String, bool, bool)> = sqlx::query_as(
            "SELECT p.role, p.db, has_database_privilege(p.role, p.db, 'CONNECT'),
                    has_database_privilege(p.role, p.db, 'TEMPORARY')
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
            .map(|(role, db, connect, temporary)| {
                ((role, db), DatabasePrivileges { connect, temporary })
            })
            .collect())
    }
}
