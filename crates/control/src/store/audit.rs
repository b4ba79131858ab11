//! `audit_events`: who did what to which tenant, written in the same transaction as the change.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use tenancy_core::{OrgId, Tenant};

use super::{Store, Tx};
use crate::error::ControlError;

/// A page of the audit log, newest first: `before_id` is the last id of the previous page.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub org_id: Option<OrgId>,
    /// Actions starting with this (`tenant.` or `tenant.suspend`).
    pub action: Option<String>,
    /// Events of this actor (its subject).
    pub actor: Option<String>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Who asked for a change, recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub subject: String,
    pub org_id: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    /// The control plane acting on its own (workers, reconciler).
    pub fn system() -> Self {
        Self::named("system:engine")
    }

    pub fn named(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            org_id: None,
            request_id: None,
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_subject: String,
    pub actor_org: Option<String>,
    pub action: String,
    pub org_id: Option<String>,
    pub request_id: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Writes an audit event inside the caller's transaction.
pub(crate) async fn audit(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    org_id: Option<&OrgId>,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), ControlError> {
    sqlx::query(
        "INSERT INTO audit_events (actor_subject, actor_org, action, org_id, request_id, before, after)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&actor.subject)
    .bind(actor.org_id.as_deref())
    .bind(action)
    .bind(org_id.map(OrgId::as_str))
    .bind(actor.request_id.as_deref())
    .bind(before)
    .bind(after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the audit event of a change to a tenant, with what it was `before` and is `after`
/// (either absent where the tenant was not, or is no more), inside the caller's transaction.
pub(crate) async fn audit_change(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    before: Option<&Tenant>,
    after: Option<&Tenant>,
) -> Result<(), ControlError> {
    let org_id = before.or(after).map(|t| &t.org_id);
    let snapshot = |t: Option<&Tenant>| t.map(tenant_snapshot);
    audit(tx, actor, action, org_id, snapshot(before), snapshot(after)).await
}

/// [`audit_change`], then commits: the tail of every transaction that changes a tenant.
pub(crate) async fn commit_change(
    mut tx: Tx,
    actor: &Actor,
    action: &str,
    before: Option<&Tenant>,
    after: Option<&Tenant>,
) -> Result<(), ControlError> {
    audit_change(&mut tx, actor, action, before, after).await?;
    tx.commit().await?;
    Ok(())
}

/// [`audit`], then commits: the tail of every transaction that changes something else (a
/// setting, a server, a tenant's read-only state).
pub(crate) async fn commit_audited(
    mut tx: Tx,
    actor: &Actor,
    action: &str,
    org_id: Option<&OrgId>,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), ControlError> {
    audit(&mut tx, actor, action, org_id, before, after).await?;
    tx.commit().await?;
    Ok(())
}

/// What an audit event records of a tenant.
pub(crate) fn tenant_snapshot(tenant: &Tenant) -> Value {
    serde_json::json!({
        "org_id": tenant.org_id, "name": tenant.name, "slug": tenant.slug,
        "db_name": tenant.db_name, "server_id": tenant.server_id, "region": tenant.region,
        "tier": tenant.tier, "status": tenant.status, "status_reason": tenant.status_reason,
        "kind": tenant.kind, "parent_org_id": tenant.parent_org_id,
    })
}

impl Store {
    /// Audit events, newest first; `before_id` pages backwards.
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, ControlError> {
        self.run("audit_events", async {
            Ok(sqlx::query_as::<_, AuditEvent>(
                "SELECT id, at, actor_subject, actor_org, action, org_id, request_id, before, after
                 FROM audit_events
                 WHERE ($1::text IS NULL OR org_id = $1) AND ($2::bigint IS NULL OR id < $2)
                   AND ($4::text IS NULL OR starts_with(action, $4))
                   AND ($5::text IS NULL OR actor_subject = $5)
                 ORDER BY id DESC LIMIT $3",
            )
            .bind(filter.org_id.as_ref().map(OrgId::as_str))
            .bind(filter.before_id)
            .bind(filter.limit)
            .bind(filter.action.as_deref())
            .bind(filter.actor.as_deref())
            .fetch_all(self.pool())
            .await?)
        })
        .await
    }
}
