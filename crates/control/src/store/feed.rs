//! The change feed: every tenant change services must see (status, tier, placement, name) takes
//! the next `change_seq` in a trigger, under a transaction-scoped lock, so sequence order is
//! commit order. The trigger also notifies [`TENANT_CHANGES_CHANNEL`].

use sqlx::FromRow;
use tenancy_core::{OrgId, TenantChange, TenantStatus, Tier};

use super::Store;
use crate::error::ControlError;

/// Channel the registry's trigger notifies on every tenant change (payload: the change sequence).
pub const TENANT_CHANGES_CHANNEL: &str = "tenancy_tenant_changes";

#[derive(FromRow)]
struct ChangeRow {
    seq: i64,
    #[sqlx(try_from = "String")]
    org_id: OrgId,
    #[sqlx(try_from = "String")]
    status: TenantStatus,
    #[sqlx(try_from = "String")]
    tier: Tier,
    read_only: bool,
}

impl From<ChangeRow> for TenantChange {
    fn from(row: ChangeRow) -> Self {
        TenantChange {
            seq: row.seq,
            org_id: row.org_id,
            status: row.status,
            tier: row.tier,
            read_only: row.read_only,
        }
    }
}

impl Store {
    /// Changes after `after`, oldest first: the latest state of each tenant that changed.
    /// The last change sequence number given (0 before the first).
    pub async fn last_change_seq(&self) -> Result<i64, ControlError> {
        self.run("last_change_seq", async {
            Ok(sqlx::query_scalar(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM tenant_change_seq",
            )
            .fetch_one(self.pool())
            .await?)
        })
        .await
    }

    pub async fn changes(&self, after: i64, limit: i64) -> Result<Vec<TenantChange>, ControlError> {
        self.run("changes", async {
            let rows = sqlx::query_as::<_, ChangeRow>(
                "SELECT change_seq AS seq, org_id, status, tier, read_only FROM tenants
                 WHERE change_seq > $1 ORDER BY change_seq LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
            Ok(rows.into_iter().map(TenantChange::from).collect())
        })
        .await
    }
}
