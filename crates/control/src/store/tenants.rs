//! `tenants`: the organization -> database map, with status, placement and tier.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, Row};
use tenancy_core::{
    CreateTenant, DbName, ErrorCode, OrgId, Region, ServerId, Slug, SuspendedBy, Tenant,
    TenantKind, TenantName, TenantSelector, TenantStatus, Tier,
};

use super::servers::TEMPLATE_VERSION_LOCK;
use super::{Actor, Maybe, Store, Tx, commit_change, parse_all};
use crate::error::ControlError;
use crate::secrets::Credentials;

/// The one column list of a tenant read.
const TENANT_COLUMNS: &str = "org_id, name, slug, db_name, server_id, region, tier, status, \
    status_reason, suspended_by, kind, parent_org_id, admin_email, schema_version, last_migration_error, read_only, \
    read_only_reason, created_at, updated_at";

#[derive(FromRow)]
struct TenantRow {
    #[sqlx(try_from = "String")]
    org_id: OrgId,
    #[sqlx(try_from = "String")]
    name: TenantName,
    #[sqlx(try_from = "String")]
    slug: Slug,
    #[sqlx(try_from = "String")]
    db_name: DbName,
    #[sqlx(try_from = "Option<String>")]
    server_id: Maybe<ServerId>,
    #[sqlx(try_from = "String")]
    region: Region,
    #[sqlx(try_from = "String")]
    tier: Tier,
    #[sqlx(try_from = "String")]
    status: TenantStatus,
    status_reason: Option<String>,
    #[sqlx(try_from = "Option<String>")]
    suspended_by: Maybe<SuspendedBy>,
    #[sqlx(try_from = "String")]
    kind: TenantKind,
    #[sqlx(try_from = "Option<String>")]
    parent_org_id: Maybe<OrgId>,
    admin_email: Option<String>,
    schema_version: Option<i32>,
    last_migration_error: Option<String>,
    read_only: bool,
    read_only_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Self {
        Tenant {
            org_id: row.org_id,
            name: row.name,
            slug: row.slug,
            db_name: row.db_name,
            server_id: row.server_id.0,
            region: row.region,
            tier: row.tier,
            status: row.status,
            status_reason: row.status_reason,
            suspended_by: row.suspended_by.0,
            kind: row.kind,
            parent_org_id: row.parent_org_id.0,
            schema_version: row.schema_version,
            admin_email: row.admin_email,
            last_migration_error: row.last_migration_error,
            read_only: row.read_only,
            read_only_reason: row.read_only_reason,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// `SELECT <tenant columns> ...` as SQL text (the column list is a constant, never user text).
fn select(rest: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {TENANT_COLUMNS} FROM tenants {rest}"))
}

/// A page of the tenants a selector selects: `after` is the last `org_id` of the previous page.
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub selector: TenantSelector,
    /// A text the tenant's organization id or database name equals, or its name contains
    /// (ignoring case).
    pub search: Option<String>,
    pub after: Option<OrgId>,
    pub limit: i64,
}

impl From<TenantSelector> for TenantFilter {
    fn from(selector: TenantSelector) -> Self {
        Self {
            selector,
            ..Self::default()
        }
    }
}

impl Store {
    pub async fn tenant(&self, org_id: &OrgId) -> Result<Option<Tenant>, ControlError> {
        self.run("tenant", async {
            Ok(sqlx::query_as::<_, TenantRow>(select("WHERE org_id = $1"))
                .bind(org_id.as_str())
                .fetch_optional(self.pool())
                .await?
                .map(Tenant::from))
        })
        .await
    }

    /// Tenants matching the filter, ordered by `org_id`.
    pub async fn list_tenants(&self, filter: &TenantFilter) -> Result<Vec<Tenant>, ControlError> {
        let s = &filter.selector;
        self.run("list_tenants", async {
            let rows = sqlx::query_as::<_, TenantRow>(select(
                "WHERE (cardinality($1::text[]) = 0 OR status = ANY($1))
                   AND ($2::text IS NULL OR region = $2)
                   AND ($3::text IS NULL OR tier = $3) AND ($4::text IS NULL OR server_id = $4)
                   AND ($5::text IS NULL OR org_id > $5)
                   AND ($7::text IS NULL OR kind = $7) AND ($8::text IS NULL OR parent_org_id = $8)
                   AND (cardinality($9::text[]) = 0 OR org_id = ANY($9))
                   AND ($10::text IS NULL OR org_id = $10 OR db_name = $10
                        OR strpos(lower(name), lower($10)) > 0)
                 ORDER BY org_id LIMIT $6",
            ))
            .bind(s.statuses.iter().map(|s| s.as_str()).collect::<Vec<_>>())
            .bind(s.region.as_ref().map(Region::as_str))
            .bind(s.tier.as_ref().map(Tier::as_str))
            .bind(s.server_id.as_ref().map(ServerId::as_str))
            .bind(filter.after.as_ref().map(OrgId::as_str))
            .bind(filter.limit)
            .bind(s.kind.map(TenantKind::as_str))
            .bind(s.parent_org_id.as_ref().map(OrgId::as_str))
            .bind(s.org_ids.iter().map(OrgId::as_str).collect::<Vec<_>>())
            .bind(filter.search.as_deref())
            .fetch_all(self.pool())
            .await?;
            Ok(rows.into_iter().map(Tenant::from).collect())
        })
        .await
    }

    /// Every tenant matching the filter, read page by page (its `after` and `limit` are ignored).
    pub async fn all_tenants(&self, filter: &TenantFilter) -> Result<Vec<Tenant>, ControlError> {
        const PAGE: i64 = 1000;
        let mut all = Vec::new();
        let mut filter = TenantFilter {
            limit: PAGE,
            after: None,
            ..filter.clone()
        };
        loop {
            let page = self.list_tenants(&filter).await?;
            let done = (page.len() as i64) < PAGE;
            filter.after = page.last().map(|t| t.org_id.clone());
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Moves a client to another agency (active or provisioning), audited.
    pub async fn move_to_agency(
        &self,
        org_id: &OrgId,
        agency: &OrgId,
        actor: &Actor,
    ) -> Result<Tenant, ControlError> {
        self.run("move_to_agency", async {
            let mut tx = self.begin().await?;
            let before = lock_tenant(&mut tx, org_id).await?;
            if before.kind != TenantKind::Client {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!(
                        "tenant {org_id} is {} tenant; only clients move",
                        before.kind.with_article()
                    ),
                ));
            }
            if before.status == TenantStatus::Deleted {
                return Err(ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!("tenant {org_id} is deleted"),
                ));
            }
            check_agency(&mut tx, agency).await?;
            let after: Tenant = sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
                "UPDATE tenants SET parent_org_id = $2, updated_at = now() WHERE org_id = $1
                 RETURNING {TENANT_COLUMNS}"
            )))
            .bind(org_id.as_str())
            .bind(agency.as_str())
            .fetch_one(&mut *tx)
            .await?
            .into();
            commit_change(
                tx,
                actor,
                "tenant.moved_to_agency",
                Some(&before),
                Some(&after),
            )
            .await?;
            Ok(after)
        })
        .await
    }

    /// Records a tenant's schema version and the last migration error (cleared on success).
    pub async fn record_migration(
        &self,
        org_id: &OrgId,
        version: Option<i32>,
        error: Option<&str>,
    ) -> Result<(), ControlError> {
        self.run("record_migration", async {
            sqlx::query(
                "UPDATE tenants SET schema_version = coalesce($2, schema_version),
                        last_migration_error = $3, updated_at = now()
                 WHERE org_id = $1",
            )
            .bind(org_id.as_str())
            .bind(version)
            .bind(error)
            .execute(self.pool())
            .await?;
            Ok(())
        })
        .await
    }

    /// The tiers tenants that are not deleted have, with how many tenants have each.
    pub async fn tiers_in_use(&self) -> Result<Vec<(Tier, i64)>, ControlError> {
        self.run("tiers_in_use", async {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT tier, count(*) FROM tenants WHERE status <> 'deleted' GROUP BY tier",
            )
            .fetch_all(self.pool())
            .await?;
            rows.into_iter()
                .map(|(tier, count)| Ok((tier.parse().map_err(ControlError::corrupt)?, count)))
                .collect()
        })
        .await
    }

    /// Deleted tenants whose retention has run out and that have no operation under way.
    pub async fn expired_tenants(&self) -> Result<Vec<OrgId>, ControlError> {
        self.run("expired_tenants", async {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT org_id FROM tenants t WHERE status = 'deleted' AND purge_after <= now()
                   AND NOT EXISTS (SELECT 1 FROM operations o
                                   WHERE o.org_id = t.org_id AND o.state IN ('queued', 'running'))",
            )
            .fetch_all(self.pool())
            .await?;
            parse_all(ids)
        })
        .await
    }

    /// Tenants in a transitional status whose latest operation is neither under way nor failed
    /// (or that have none): the work that should move them on was lost.
    pub async fn stuck_tenants(&self) -> Result<Vec<Tenant>, ControlError> {
        self.run("stuck_tenants", async {
            let rows = sqlx::query_as::<_, TenantRow>(select(
                "t WHERE status IN ('provisioning', 'deleting')
                   AND coalesce((SELECT o.state FROM operations o WHERE o.org_id = t.org_id
                                 ORDER BY o.created_at DESC LIMIT 1), 'succeeded') = 'succeeded'",
            ))
            .fetch_all(self.pool())
            .await?;
            Ok(rows.into_iter().map(Tenant::from).collect())
        })
        .await
    }

    /// What the tenant role's password derives from.
    pub async fn credentials(&self, org_id: &OrgId) -> Result<Option<Credentials>, ControlError> {
        self.run("credentials", async {
            let row: Option<(String, uuid::Uuid, i32, Option<String>)> = sqlx::query_as(
                "SELECT role_name, credential_nonce, credential_generation, credential_key_id
                 FROM tenants WHERE org_id = $1",
            )
            .bind(org_id.as_str())
            .fetch_optional(self.pool())
            .await?;
            row.map(|(role, nonce, generation, key_id)| {
                Ok(Credentials {
                    org_id: org_id.clone(),
                    role: role.parse().map_err(ControlError::corrupt)?,
                    nonce,
                    generation,
                    key_id,
                })
            })
            .transpose()
        })
        .await
    }

    /// Tenants with a role whose password does not derive from `key_id` yet (or from the older
    /// scheme): what `tenantctl rekey` rotates.
    pub async fn tenants_to_rekey(&self, key_id: &str) -> Result<Vec<OrgId>, ControlError> {
        self.run("tenants_to_rekey", async {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT org_id FROM tenants
                 WHERE status IN ('active', 'suspended')
                   AND (credential_key_id IS DISTINCT FROM $1 OR credential_generation = 0)
                 ORDER BY org_id",
            )
            .bind(key_id)
            .fetch_all(self.pool())
            .await?;
            parse_all(ids)
        })
        .await
    }

    /// Moves every tenant that is neither active nor suspended, and has no operation under way,
    /// to a new credential generation under `key_id` in the registry alone: its role is blocked
    /// or not there, and whatever makes it usable again (a retried provisioning, a converge)
    /// sets the password from the registry. A backup under way (it reads as the admin) does not
    /// hold a tenant back. Returns the tenants moved.
    pub async fn rekey_in_registry(
        &self,
        key_id: &str,
        actor: &Actor,
    ) -> Result<Vec<OrgId>, ControlError> {
        self.run("rekey_in_registry", async {
            let mut tx = self.begin().await?;
            let ids: Vec<String> = sqlx::query_scalar(
                "UPDATE tenants t SET credential_generation = credential_generation + 1,
                        credential_key_id = $1, updated_at = now()
                 WHERE status NOT IN ('active', 'suspended')
                   AND (credential_key_id IS DISTINCT FROM $1 OR credential_generation = 0)
                   AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.org_id = t.org_id
                                   AND o.state IN ('queued', 'running')
                                   AND o.kind NOT IN ('backup', 'restore_copy'))
                 RETURNING org_id",
            )
            .bind(key_id)
            .fetch_all(&mut *tx)
            .await?;
            if !ids.is_empty() {
                super::audit(
                    &mut tx,
                    actor,
                    "tenants.credentials_rekeyed",
                    None,
                    None,
                    Some(serde_json::json!({ "tenants": ids, "key_id": key_id })),
                )
                .await?;
            }
            tx.commit().await?;
            parse_all(ids)
        })
        .await
    }

    /// Tenants whose password does not derive from `key_id` yet, whatever their status.
    pub async fn tenants_on_other_keys(&self, key_id: &str) -> Result<Vec<OrgId>, ControlError> {
        self.run("tenants_on_other_keys", async {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT org_id FROM tenants
                 WHERE credential_key_id IS DISTINCT FROM $1 OR credential_generation = 0
                 ORDER BY org_id",
            )
            .bind(key_id)
            .fetch_all(self.pool())
            .await?;
            parse_all(ids)
        })
        .await
    }

    /// Marks an active tenant with no operation under way failed, with the reason, if
    /// `still_missing` (asked with its row locked, given the tenant as it is now) says its
    /// database is still not on its server; false otherwise. A suspended tenant is not marked
    /// (nobody reaches it; the reconciler reports it): its suspension is kept.
    pub async fn mark_failed<F, Fut>(
        &self,
        org_id: &OrgId,
        reason: &str,
        actor: &Actor,
        still_missing: F,
    ) -> Result<bool, ControlError>
    where
        F: FnOnce(Tenant) -> Fut,
        Fut: std::future::Future<Output = Result<bool, ControlError>>,
    {
        self.run("mark_failed", async {
            let mut tx = self.begin().await?;
            let before = lock_tenant(&mut tx, org_id).await?;
            let open: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM operations
                                WHERE org_id = $1 AND state IN ('queued', 'running'))",
            )
            .bind(org_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if open || before.status != TenantStatus::Active {
                return Ok(false);
            }
            // Asked with the row locked: no move can switch it meanwhile.
            if !still_missing(before.clone()).await? {
                return Ok(false);
            }
            let after =
                set_status(&mut tx, org_id, TenantStatus::Failed, Some(reason), None).await?;
            commit_change(tx, actor, "tenant.failed", Some(&before), Some(&after)).await?;
            Ok(true)
        })
        .await
    }

    /// Tenants with an operation queued or running.
    pub async fn tenants_with_open_operations(
        &self,
    ) -> Result<std::collections::HashSet<OrgId>, ControlError> {
        self.run("tenants_with_open_operations", async {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT org_id FROM operations WHERE state IN ('queued', 'running')",
            )
            .fetch_all(self.pool())
            .await?;
            parse_all(ids)
        })
        .await
    }

    /// How many tenants there are of each status, tier and kind.
    pub async fn tenant_counts(
        &self,
    ) -> Result<Vec<(TenantStatus, Tier, TenantKind, i64)>, ControlError> {
        self.run("tenant_counts", async {
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT status, tier, kind, count(*) FROM tenants GROUP BY status, tier, kind",
            )
            .fetch_all(self.pool())
            .await?;
            rows.into_iter()
                .map(|(status, tier, kind, n)| {
                    Ok((
                        status.parse().map_err(ControlError::corrupt)?,
                        tier.parse().map_err(ControlError::corrupt)?,
                        kind.parse().map_err(ControlError::corrupt)?,
                        n,
                    ))
                })
                .collect()
        })
        .await
    }

    /// How many placed tenants each server has at each recorded schema version.
    pub async fn schema_versions(&self) -> Result<Vec<(ServerId, Option<i32>, i64)>, ControlError> {
        self.run("schema_versions", async {
            let rows: Vec<(String, Option<i32>, i64)> = sqlx::query_as(
                "SELECT server_id, schema_version, count(*) FROM tenants
                 WHERE server_id IS NOT NULL GROUP BY server_id, schema_version
                 ORDER BY server_id, schema_version",
            )
            .fetch_all(self.pool())
            .await?;
            rows.into_iter()
                .map(|(server, version, n)| {
                    Ok((server.parse().map_err(ControlError::corrupt)?, version, n))
                })
                .collect()
        })
        .await
    }

    /// Tenants whose last fleet migration failed, by `org_id`.
    pub async fn migration_failures(&self, limit: i64) -> Result<Vec<Tenant>, ControlError> {
        self.run("migration_failures", async {
            Ok(sqlx::query_as::<_, TenantRow>(select(
                "WHERE last_migration_error IS NOT NULL ORDER BY org_id LIMIT $1",
            ))
            .bind(limit)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(Tenant::from)
            .collect())
        })
        .await
    }

    /// Tenants per status, for metrics.
    pub async fn tenants_by_status(&self) -> Result<Vec<(TenantStatus, i64)>, ControlError> {
        self.run("tenants_by_status", async {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT status, count(*) FROM tenants GROUP BY status")
                    .fetch_all(self.pool())
                    .await?;
            rows.into_iter()
                .map(|(status, n)| Ok((status.parse().map_err(ControlError::corrupt)?, n)))
                .collect()
        })
        .await
    }
}

/// The tenant, locked for the rest of the transaction.
///
/// Lock order: a transaction that changes a tenant's row and one of its operations locks the
/// tenant's row first. Queuing an operation does so (the row, then the insert, which waits on
/// any open operation of the tenant being changed); one that changed the operation first and
/// then waited for the row would deadlock with it.
pub(super) async fn lock_tenant(tx: &mut Tx, org_id: &OrgId) -> Result<Tenant, ControlError> {
    lock_tenant_if_present(tx, org_id)
        .await?
        .ok_or_else(|| ControlError::TenantNotFound(org_id.clone()))
}

/// The tenant, locked for the rest of the transaction (see [`lock_tenant`]), if it exists.
pub(super) async fn lock_tenant_if_present(
    tx: &mut Tx,
    org_id: &OrgId,
) -> Result<Option<Tenant>, ControlError> {
    Ok(
        sqlx::query_as::<_, TenantRow>(select("WHERE org_id = $1 FOR UPDATE"))
            .bind(org_id.as_str())
            .fetch_optional(&mut **tx)
            .await?
            .map(Tenant::from),
    )
}

pub(super) async fn set_status(
    tx: &mut Tx,
    org_id: &OrgId,
    status: TenantStatus,
    reason: Option<&str>,
    suspended_by: Option<SuspendedBy>,
) -> Result<Tenant, ControlError> {
    Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE tenants SET status = $2, status_reason = $3, suspended_by = $4, updated_at = now()
         WHERE org_id = $1 RETURNING {TENANT_COLUMNS}"
    )))
    .bind(org_id.as_str())
    .bind(status.as_str())
    .bind(reason)
    .bind(suspended_by.map(SuspendedBy::as_str))
    .fetch_one(&mut **tx)
    .await?
    .into())
}

/// Makes a provisioned tenant active at `schema_version`. The spare it claimed, renamed to its
/// database by now, is forgotten, and its operation (`op`) records the path it took: warm with
/// a spare, else cold; returns the tenant, and whether it was made from a spare.
///
/// Refused with [`ControlError::TemplateAhead`] when the server's template is at a newer version
/// (a fleet migration moved it on after the spare or the clone was made). The version is read
/// under the template version lock, taken shared: a fleet migration records a new version under
/// it exclusively and only then lists the tenants it migrates, so a tenant activated at an old
/// version is either in that list or refused here.
pub(super) async fn activate(
    tx: &mut Tx,
    op: uuid::Uuid,
    tenant: &Tenant,
    schema_version: Option<i32>,
) -> Result<(Tenant, bool), ControlError> {
    let org_id = &tenant.org_id;
    if let Some(server) = &tenant.server_id {
        // Its own statement: the next one's snapshot must be taken once the lock is held.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT pg_advisory_xact_lock_shared({TEMPLATE_VERSION_LOCK})"
        )))
        .bind(server.as_str())
        .execute(&mut **tx)
        .await?;
    }
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH taken AS (DELETE FROM spare_databases WHERE claimed_by = $1 RETURNING db_name),
              path AS (UPDATE operations
                       SET provision_path = CASE WHEN EXISTS (SELECT FROM taken) THEN 'warm'
                                                 ELSE 'cold' END
                       WHERE id = $3 RETURNING id)
         UPDATE tenants SET status = 'active', status_reason = NULL, schema_version = $2,
                updated_at = now()
         WHERE org_id = $1
         RETURNING {TENANT_COLUMNS}, EXISTS (SELECT FROM taken) AS from_spare,
                   (SELECT s.template_version FROM database_servers s
                    WHERE s.id = tenants.server_id) AS template_version"
    )))
    .bind(org_id.as_str())
    .bind(schema_version)
    .bind(op)
    .fetch_one(&mut **tx)
    .await?;
    let template_version: Option<i32> = row.try_get("template_version")?;
    if let (Some(version), Some(ours), Some(server)) =
        (template_version, schema_version, &tenant.server_id)
        && version > ours
    {
        return Err(ControlError::TemplateAhead {
            server: server.clone(),
            version,
        });
    }
    Ok((
        TenantRow::from_row(&row)?.into(),
        row.try_get("from_spare")?,
    ))
}

/// Marks a tenant deleted, its database kept until `purge_after`.
pub(super) async fn mark_deleted(
    tx: &mut Tx,
    org_id: &OrgId,
    retention: std::time::Duration,
) -> Result<Tenant, ControlError> {
    Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE tenants SET status = 'deleted', status_reason = NULL, deleted_at = now(),
                purge_after = now() + make_interval(secs => $2), updated_at = now()
         WHERE org_id = $1 RETURNING {TENANT_COLUMNS}"
    )))
    .bind(org_id.as_str())
    .bind(retention.as_secs_f64())
    .fetch_one(&mut **tx)
    .await?
    .into())
}

/// Records that the tenant's password now derives from `generation` under `key_id`.
pub(super) async fn set_credentials(
    tx: &mut Tx,
    org_id: &OrgId,
    generation: i32,
    key_id: &str,
) -> Result<Tenant, ControlError> {
    Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE tenants SET credential_generation = $2, credential_key_id = $3, updated_at = now()
         WHERE org_id = $1 RETURNING {TENANT_COLUMNS}"
    )))
    .bind(org_id.as_str())
    .bind(generation)
    .bind(key_id)
    .fetch_one(&mut **tx)
    .await?
    .into())
}

/// A tenant row to insert, provisioning (see `Store::create_tenant`).
pub(super) struct Insert<'a> {
    pub org_id: &'a OrgId,
    pub request: &'a CreateTenant,
    /// The request as stored, to recognize the same one again.
    pub normalized: &'a Value,
    pub slug: &'a Slug,
    pub region: &'a Region,
    pub tier: &'a Tier,
    pub kind: TenantKind,
    pub key_id: &'a str,
    pub server: Option<&'a ServerId>,
    pub nonce: uuid::Uuid,
}

pub(super) async fn insert(tx: &mut Tx, row: Insert<'_>) -> Result<Tenant, ControlError> {
    let req = row.request;
    let slug = row.slug;
    Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tenants (org_id, name, slug, db_name, role_name, region, tier, status,
                              parent_org_id, admin_email, request, credential_generation,
                              credential_key_id, kind, server_id, credential_nonce)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'provisioning', $8, $9, $10, 1, $11, $12, $13, $14)
         RETURNING {TENANT_COLUMNS}"
    )))
    .bind(row.org_id.as_str())
    .bind(req.name.as_str())
    .bind(slug.as_str())
    .bind(slug.db_name().as_str())
    .bind(slug.role_name().as_str())
    .bind(row.region.as_str())
    .bind(row.tier.as_str())
    .bind(req.parent_org_id.as_ref().map(OrgId::as_str))
    .bind(req.admin_email.as_ref().map(|e| e.as_str()))
    .bind(row.normalized)
    .bind(row.key_id)
    .bind(row.kind.as_str())
    .bind(row.server.map(ServerId::as_str))
    .bind(row.nonce)
    .fetch_one(&mut **tx)
    .await?
    .into())
}

/// The request a tenant was created by and its status, its row locked, if it exists.
pub(super) async fn stored_request(
    tx: &mut Tx,
    org_id: &OrgId,
) -> Result<Option<(Value, TenantStatus)>, ControlError> {
    sqlx::query_as("SELECT request, status FROM tenants WHERE org_id = $1 FOR UPDATE")
        .bind(org_id.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .map(|(request, status): (Value, String)| {
            status
                .parse()
                .map(|s| (request, s))
                .map_err(ControlError::corrupt)
        })
        .transpose()
}

/// Renames the tenant and/or changes its tier (either left as is when `None`).
pub(super) async fn rename_or_retier(
    tx: &mut Tx,
    org_id: &OrgId,
    name: Option<&TenantName>,
    tier: Option<&Tier>,
) -> Result<Tenant, ControlError> {
    Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE tenants SET name = coalesce($2, name), tier = coalesce($3, tier), updated_at = now()
         WHERE org_id = $1 RETURNING {TENANT_COLUMNS}"
    )))
    .bind(org_id.as_str())
    .bind(name.map(TenantName::as_str))
    .bind(tier.map(Tier::as_str))
    .fetch_one(&mut **tx)
    .await?
    .into())
}

pub(super) async fn delete_row(tx: &mut Tx, org_id: &OrgId) -> Result<(), ControlError> {
    sqlx::query("DELETE FROM tenants WHERE org_id = $1")
        .bind(org_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The first of `base`, `base_2`, `base_3`, ... that no tenant uses (and that fits 63 bytes).
pub(super) async fn free_slug(tx: &mut Tx, base: &Slug) -> Result<Slug, ControlError> {
    let taken: Vec<String> =
        sqlx::query_scalar("SELECT slug FROM tenants WHERE slug = $1 OR slug LIKE $2")
            .bind(base.as_str())
            .bind(format!("{}\\_%", base.as_str()))
            .fetch_all(&mut **tx)
            .await?;
    if !taken.iter().any(|s| s == base.as_str()) {
        return Ok(base.clone());
    }
    (2..10_000)
        .map(|n| format!("{}_{n}", base.as_str()))
        .find(|candidate| !taken.contains(candidate))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ControlError::conflict(ErrorCode::SlugTaken, format!("no free slug near {base}"))
        })
}

/// A client's agency must be an agency tenant, active or provisioning. Its row is locked (shared)
/// until the caller commits, so it cannot be deleted under the new client.
pub(super) async fn check_agency(tx: &mut Tx, parent: &OrgId) -> Result<(), ControlError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT kind, status FROM tenants WHERE org_id = $1 FOR SHARE")
            .bind(parent.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    let row = row
        .map(|(kind, status)| {
            let kind: TenantKind = kind.parse().map_err(ControlError::corrupt)?;
            let status: TenantStatus = status.parse().map_err(ControlError::corrupt)?;
            Ok::<_, ControlError>((kind, status))
        })
        .transpose()?;
    let Some((kind, status)) = row else {
        return Err(ControlError::conflict(
            ErrorCode::UnknownParent,
            format!("parent_org_id {parent} is not a tenant"),
        ));
    };
    if kind != TenantKind::Agency {
        return Err(ControlError::conflict(
            ErrorCode::InvalidParent,
            format!(
                "parent_org_id {parent} is {} tenant, not an agency",
                kind.with_article()
            ),
        ));
    }
    if !matches!(status, TenantStatus::Active | TenantStatus::Provisioning) {
        return Err(ControlError::conflict(
            ErrorCode::InvalidParent,
            format!("agency {parent} is {status}; clients go under an active agency"),
        ));
    }
    Ok(())
}

/// Takes a provisioning tenant off its server (see `Store::unplace`).
pub(super) async fn clear_server(tx: &mut Tx, org_id: &OrgId) -> Result<(), ControlError> {
    sqlx::query("UPDATE tenants SET server_id = NULL, updated_at = now() WHERE org_id = $1")
        .bind(org_id.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Puts the tenant on a server (its placement, or a move's switch).
pub(super) async fn set_server(
    tx: &mut Tx,
    org_id: &OrgId,
    server: &ServerId,
) -> Result<Tenant, ControlError> {
    Ok(sqlx::query_as::<_, TenantRow>(sqlx::AssertSqlSafe(format!(
        "UPDATE tenants SET server_id = $2, updated_at = now()
         WHERE org_id = $1 RETURNING {TENANT_COLUMNS}"
    )))
    .bind(org_id.as_str())
    .bind(server.as_str())
    .fetch_one(&mut **tx)
    .await?
    .into())
}
