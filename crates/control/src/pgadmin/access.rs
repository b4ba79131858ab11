//! Who may reach a tenant database: the lockdown, and the app role's privileges granted to
//! the tenant's role.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::{Connection, PgConnection, Row};
use tenancy_core::{DbName, ErrorCode, OrgId, RoleName};
use tracing::instrument;

use super::roles::revoke_memberships;
use super::{APP_GROUP_ROLE, NOT_THE_TENANTS, ServerAdmin, TAG_PREFIX, close_in_background, tag};
use crate::error::ControlError;
use crate::sql::{ddl, ident, literal};

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

/// The statements that mirror the app role's privileges, per template version, each lacking only
/// its grantee (`GRANT ... TO `). A version's privileges are those its migrations give, the
/// same in every clone of it: read once from the first clone, not from each new one (a cold
/// session in a fresh clone spends more on that catalog read than on the grants).
#[derive(Clone, Default)]
pub(super) struct AppGrants(Arc<Mutex<HashMap<i32, Arc<[String]>>>>);

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

impl ServerAdmin {
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
    /// PUBLIC loses every privilege on it, the role gets CONNECT (TEMPORARY is its tier's, see
    /// [`Self::set_temp_tables`]) and loses any membership, then connections are allowed (so no
    /// other role can ever connect). A database tagged for anyone else is refused, changing
    /// nothing. Inside, the role has no privilege yet but what it was given there before (see
    /// [`Self::grant_app_privileges`]).
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
                 GRANT CONNECT ON DATABASE {d} TO {r};
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
    pub(super) async fn grant_app_privileges_on(
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
}

/// Inside a tenant database: the statements that give a role every privilege the template
/// grants the app role, one per object (all its privileges at once), each ending in `TO ` for
/// the grantee. Names are the catalogs' own, quoted by `format('%I')`. What a tagged role (a
/// tenant's) granted the app role itself, on its temporary tables or through its own default
/// privileges, is not the template's: it is never mirrored (and never remembered for the
/// clones that follow).
pub(super) fn app_grants_query() -> String {
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
