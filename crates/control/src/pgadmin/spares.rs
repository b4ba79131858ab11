//! The warm pool on a server: spare databases cloned ahead of demand, and made a tenant's.

use secrecy::SecretString;
use tenancy_core::{DbName, OrgId, RoleName};
use tracing::instrument;

use super::roles::{revoke_memberships, role_attributes, role_settings};
use super::{NOT_A_WHOLE_SPARE, SPARE_TAG, ServerAdmin, tag, tagged_org};
use crate::config::TierLimits;
use crate::error::ControlError;
use crate::sql::{ident, literal};

impl ServerAdmin {
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

    /// Drops a spare and its role.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn drop_spare(&self, name: &DbName) -> Result<(), ControlError> {
        self.drop_database(name).await?;
        self.execute(format!("DROP ROLE IF EXISTS {}", ident(name.as_str())))
            .await
    }

    /// Makes a claimed spare the tenant's, in one transaction: its role tagged for the tenant,
    /// renamed to the tenant's and given the tenant's login, password and limits; its database
    /// tagged, renamed to the tenant's, closed to PUBLIC and opened to the role (`TEMPORARY` too
    /// when its tier allows temporary tables; the role has the template's privileges inside
    /// since the spare was made). A spare never had a session to
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
             GRANT {privileges} ON DATABASE {d} TO {r};
             ALTER DATABASE {d} ALLOW_CONNECTIONS true;",
                sd_name = literal(spare.as_str()),
                d_name = literal(db.as_str()),
                sr_name = literal(spare_role.as_str()),
                r_name = literal(role.as_str()),
                spare_tag = literal(SPARE_TAG),
                tag = literal(&tag(org_id)),
                attributes = role_attributes(true, limits, password, self.scram_iterations),
                revokes = revoke_memberships(role),
                settings = role_settings(&r, limits),
                // A new tenant is active and writable: temporary tables are its tier's choice.
                privileges = if limits.temp_tables {
                    "CONNECT, TEMPORARY"
                } else {
                    "CONNECT"
                },
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
}
