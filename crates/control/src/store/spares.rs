//! `spare_databases`: the warm pool. A spare is recorded (not ready) before it is cloned, made
//! ready once it is, claimed for one tenant in one transaction (`FOR UPDATE SKIP LOCKED`, so two
//! provisionings, on any replicas, never get the same spare), and forgotten once renamed to the
//! tenant's database.

use tenancy_core::{DbName, OrgId, ServerId};
use uuid::Uuid;

use super::{Store, parse_all};
use crate::error::ControlError;

/// A spare as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spare {
    pub db_name: DbName,
    pub server_id: ServerId,
    pub template_version: i32,
    pub ready: bool,
    pub claimed_by: Option<OrgId>,
    /// Whether the spare has its own role (of the spare's name) with the template's privileges.
    pub has_role: bool,
}

type SpareRow = (String, String, i32, bool, Option<String>, bool);

fn spare(row: SpareRow) -> Result<Spare, ControlError> {
    let (db_name, server_id, template_version, ready, claimed_by, has_role) = row;
    Ok(Spare {
        db_name: db_name.parse().map_err(ControlError::corrupt)?,
        server_id: server_id.parse().map_err(ControlError::corrupt)?,
        template_version,
        ready,
        claimed_by: claimed_by
            .map(|o| o.parse())
            .transpose()
            .map_err(ControlError::corrupt)?,
        has_role,
    })
}

const SPARE_COLUMNS: &str = "db_name, server_id, template_version, ready, claimed_by, has_role";

/// Claims the oldest ready spare on `server` at its current template version for the tenant, in
/// the caller's transaction (or alone). A spare another claim holds is skipped, not waited for.
pub(super) async fn claim_spare_in(
    executor: impl sqlx::PgExecutor<'_>,
    org_id: &OrgId,
    server: &ServerId,
) -> Result<Option<Spare>, ControlError> {
    let row: Option<SpareRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE spare_databases SET claimed_by = $1
         WHERE db_name = (
             SELECT p.db_name FROM spare_databases p
             JOIN database_servers s ON s.id = p.server_id
             WHERE p.server_id = $2 AND p.ready AND p.claimed_by IS NULL
               AND p.template_version = s.template_version
             ORDER BY p.created_at LIMIT 1
             FOR UPDATE OF p SKIP LOCKED)
         RETURNING {SPARE_COLUMNS}"
    )))
    .bind(org_id.as_str())
    .bind(server.as_str())
    .fetch_optional(executor)
    .await?;
    row.map(spare).transpose()
}

/// Gives the spare a tenant claimed back to the pool (the tenant was taken off its server
/// before the spare was made its own).
pub(super) async fn release_spare(tx: &mut super::Tx, org_id: &OrgId) -> Result<(), ControlError> {
    sqlx::query("UPDATE spare_databases SET claimed_by = NULL WHERE claimed_by = $1")
        .bind(org_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Records a spare about to be cloned on `server` at `template_version`; its name is new.
    pub async fn reserve_spare(
        &self,
        server: &ServerId,
        template_version: i32,
    ) -> Result<DbName, ControlError> {
        self.run("reserve_spare", async {
            let name: DbName = format!("spare_{}", Uuid::now_v7().simple())
                .parse()
                .map_err(ControlError::corrupt)?;
            sqlx::query(
                "INSERT INTO spare_databases (db_name, server_id, template_version, has_role)
                 VALUES ($1, $2, $3, true)",
            )
            .bind(name.as_str())
            .bind(server.as_str())
            .bind(template_version)
            .execute(self.pool())
            .await?;
            Ok(name)
        })
        .await
    }

    /// The spare is cloned and locked down: it may be claimed.
    pub async fn spare_ready(&self, name: &DbName) -> Result<(), ControlError> {
        self.run("spare_ready", async {
            sqlx::query("UPDATE spare_databases SET ready = true WHERE db_name = $1")
                .bind(name.as_str())
                .execute(self.pool())
                .await?;
            Ok(())
        })
        .await
    }

    /// Every spare recorded on `server`.
    pub async fn spares(&self, server: &ServerId) -> Result<Vec<Spare>, ControlError> {
        self.run("spares", async {
            let rows: Vec<SpareRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SPARE_COLUMNS} FROM spare_databases WHERE server_id = $1
                 ORDER BY created_at"
            )))
            .bind(server.as_str())
            .fetch_all(self.pool())
            .await?;
            rows.into_iter().map(spare).collect()
        })
        .await
    }

    /// The servers holding spares no tenant claimed.
    pub async fn servers_with_spares(&self) -> Result<Vec<ServerId>, ControlError> {
        self.run("servers_with_spares", async {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT server_id FROM spare_databases WHERE claimed_by IS NULL",
            )
            .fetch_all(self.pool())
            .await?;
            parse_all(ids)
        })
        .await
    }

    /// Takes a spare out of the pool before it is dropped: no longer ready, so no claim takes
    /// it. False when a claim took it first. A crash before the drop leaves a spare that is not
    /// ready, which the next round drops.
    pub async fn retire_spare(&self, name: &DbName) -> Result<bool, ControlError> {
        self.run("retire_spare", async {
            let retired = sqlx::query(
                "UPDATE spare_databases SET ready = false
                 WHERE db_name = $1 AND claimed_by IS NULL",
            )
            .bind(name.as_str())
            .execute(self.pool())
            .await?;
            Ok(retired.rows_affected() == 1)
        })
        .await
    }

    /// Forgets a spare that was dropped (or never cloned). A claimed one is never forgotten here.
    pub async fn forget_spare(&self, name: &DbName) -> Result<(), ControlError> {
        self.run("forget_spare", async {
            sqlx::query("DELETE FROM spare_databases WHERE db_name = $1 AND claimed_by IS NULL")
                .bind(name.as_str())
                .execute(self.pool())
                .await?;
            Ok(())
        })
        .await
    }

    /// The spare this tenant claimed (a provisioning that stopped after claiming).
    pub async fn claimed_spare(&self, org_id: &OrgId) -> Result<Option<Spare>, ControlError> {
        self.run("claimed_spare", async {
            let row: Option<SpareRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SPARE_COLUMNS} FROM spare_databases WHERE claimed_by = $1"
            )))
            .bind(org_id.as_str())
            .fetch_optional(self.pool())
            .await?;
            row.map(spare).transpose()
        })
        .await
    }

    /// Claims the oldest ready spare on `server` at its current template version for the
    /// tenant, if there is one. One transaction; a spare another claim holds is skipped, not
    /// waited for.
    pub async fn claim_spare(
        &self,
        org_id: &OrgId,
        server: &ServerId,
    ) -> Result<Option<Spare>, ControlError> {
        self.run("claim_spare", async {
            claim_spare_in(self.pool(), org_id, server).await
        })
        .await
    }

    /// Whether a worker (alive: its lease holds) is provisioning a tenant on `server` without a
    /// spare, that is cloning the template there or about to.
    pub async fn cold_provisioning_running(&self, server: &ServerId) -> Result<bool, ControlError> {
        self.run("cold_provisioning_running", async {
            Ok(sqlx::query_scalar(
                "SELECT EXISTS (
                     SELECT FROM operations o JOIN tenants t ON t.org_id = o.org_id
                     WHERE o.kind = 'provision' AND o.state = 'running'
                       AND o.lease_expires_at > now() AND t.server_id = $1
                       AND NOT EXISTS (SELECT FROM spare_databases p
                                       WHERE p.claimed_by = o.org_id))",
            )
            .bind(server.as_str())
            .fetch_one(self.pool())
            .await?)
        })
        .await
    }
}
