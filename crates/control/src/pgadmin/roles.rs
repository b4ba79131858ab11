//! Tenant login roles: made, given their password and their tier's limits, dropped.

use secrecy::SecretString;
use tenancy_core::{ErrorCode, OrgId, RoleName};
use tracing::instrument;

use super::{NOT_THE_TENANTS, ServerAdmin, not_the_tenants, tag, tagged_org};
use crate::config::TierLimits;
use crate::error::ControlError;
use crate::secrets::scram_verifier;
use crate::sql::{ident, literal};

impl ServerAdmin {
    /// The role's tag, or `None` when the role does not exist (`Some(None)`: exists, untagged).
    pub(super) async fn role_tag(
        &self,
        role: &RoleName,
    ) -> Result<Option<Option<String>>, ControlError> {
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
        let attributes = role_attributes(login, limits, password, self.scram_iterations);
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
            literal(&scram_verifier(password, self.scram_iterations))
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

    /// Whether a role of this name exists on the server.
    pub async fn role_exists(&self, role: &RoleName) -> Result<bool, ControlError> {
        Ok(self.role_tag(role).await?.is_some())
    }

    #[instrument(skip(self), fields(server_id = %self.id))]
    /// Drops the tenant's role, if it exists and is tagged for the tenant, in one statement that
    /// checks the tag; one tagged for anyone else, or not at all, is refused and left as it is.
    #[instrument(skip(self), fields(server_id = %self.id))]
    pub async fn purge_tenant_role(
        &self,
        role: &RoleName,
        org_id: &OrgId,
    ) -> Result<(), ControlError> {
        let dropped = self
            .execute(format!(
                "DO $drop$ DECLARE found text; BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN RETURN; END IF;
                   SELECT shobj_description(oid, 'pg_authid') INTO found
                     FROM pg_roles WHERE rolname = {name};
                   IF found IS DISTINCT FROM {tag} THEN
                     RAISE EXCEPTION 'tagged %', coalesce(found, 'not at all')
                       USING ERRCODE = '{NOT_THE_TENANTS}';
                   END IF;
                   EXECUTE format('DROP ROLE %I', {name});
                 END $drop$;",
                name = literal(role.as_str()),
                tag = literal(&tag(org_id)),
            ))
            .await;
        match dropped {
            Err(e) if e.is_server_sqlstate(NOT_THE_TENANTS) => {
                let found = self.role_tag(role).await?.flatten();
                Err(not_the_tenants(
                    &format!("role {role} on server {}", self.id),
                    org_id,
                    found.as_deref(),
                ))
            }
            other => other,
        }
    }

    pub async fn drop_role(&self, role: &RoleName) -> Result<(), ControlError> {
        self.execute(format!("DROP ROLE IF EXISTS {}", ident(role.as_str())))
            .await
    }
}

/// What `CREATE ROLE` or `ALTER ROLE` gives a tenant role: login or not, no privilege beyond
/// its own database, the tier's connection limit, the password as a SCRAM verifier.
pub(super) fn role_attributes(
    login: bool,
    limits: &TierLimits,
    password: &SecretString,
    iterations: u32,
) -> String {
    format!(
        "{} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT \
         CONNECTION LIMIT {} PASSWORD {}",
        if login { "LOGIN" } else { "NOLOGIN" },
        limits.connection_limit,
        literal(&scram_verifier(password, iterations)),
    )
}

/// The tier's session settings on a tenant role (`r` already quoted): every other setting is
/// reset (a tenant's role may set its own defaults), then the tier's set; a limit the tier
/// leaves unset stays at the server's default. `temp_file_limit` is a superuser setting: the
/// admin must be a superuser, or have been granted `SET ON PARAMETER temp_file_limit`.
pub(super) fn role_settings(r: &str, limits: &TierLimits) -> String {
    let mut sql = format!("ALTER ROLE {r} RESET ALL;");
    for setting in tier_settings(limits) {
        sql.push_str(&format!(
            "\nALTER ROLE {r} SET {};",
            setting.replace('=', " = ")
        ));
    }
    sql
}

/// The settings a tenant role of this tier carries (for every database), as PostgreSQL lists
/// them in `pg_db_role_setting`: `name=value`.
pub fn tier_settings(limits: &TierLimits) -> std::collections::BTreeSet<String> {
    [
        (
            "statement_timeout",
            Some(limits.statement_timeout.as_millis()),
        ),
        (
            "idle_in_transaction_session_timeout",
            limits.idle_in_transaction_timeout.map(|t| t.as_millis()),
        ),
        // In kB, PostgreSQL's unit for it.
        (
            "temp_file_limit",
            limits
                .temp_file_limit
                .map(|size| u128::from(size.as_u64() / 1024)),
        ),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
    .collect()
}

/// Removes the role from every role it is a member of (the app role of the older model, or
/// anything granted by hand): a tenant role's privileges are its own.
pub(super) fn revoke_memberships(role: &RoleName) -> String {
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
