//! Placement: which server takes a tenant, for onboarding, moves, drain and rebalance alike.
//!
//! A server is full when its load reaches its capacity. Its load ([`SERVER_LOAD`]) is the
//! tenants placed on it plus the moves heading there that have not switched yet, so an
//! onboarding cannot take a place a queued move counts on, and a move's switch (which does not
//! check capacity again) never puts a server over. A warm-pool spare takes no place of its own:
//! claiming it makes it the tenant's database, counted as the tenant.
//!
//! Every placement locks the server rows it counts until its transaction ends (onboarding the
//! whole region's, a move its target's, and a move whose target was chosen the whole region's),
//! so that racing placements see each other's tenants and moves.

use tenancy_core::{ErrorCode, OrgId, Region, ServerId, Tenant};

use super::spares::release_spare;
use super::tenants::{clear_server, lock_tenant, set_server};
use super::{Store, Tx};
use crate::error::ControlError;

/// The load of server `s`: tenants placed on it, plus the moves heading there that have not
/// switched yet.
const SERVER_LOAD: &str = "(SELECT count(*) FROM tenants t WHERE t.server_id = s.id)
    + (SELECT count(*) FROM tenant_moves m
       JOIN operations o ON o.id = m.operation_id
       JOIN tenants t ON t.org_id = m.org_id
       WHERE m.target_server_id = s.id AND t.server_id IS DISTINCT FROM s.id
         AND o.state IN ('queued', 'running'))";

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

impl Store {
    /// Chooses a server for a tenant its onboarding could not place (see [`choose_server`]) and
    /// records it. Returns the existing placement if there is one.
    pub async fn place(
        &self,
        org_id: &OrgId,
        avoid: &[ServerId],
    ) -> Result<ServerId, ControlError> {
        self.run("place", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            if let Some(server) = tenant.server_id {
                return Ok(server);
            }
            let Some(chosen) = choose_server(&mut tx, &tenant.region, avoid).await? else {
                return Err(ControlError::NoCapacity {
                    region: tenant.region.clone(),
                });
            };
            set_server(&mut tx, org_id, &chosen).await?;
            tx.commit().await?;
            Ok(chosen)
        })
        .await
    }

    /// The server a move of `tenant` would go to when none is named (see [`best_target`]).
    pub async fn move_target(
        &self,
        tenant: &Tenant,
        avoid: &[ServerId],
    ) -> Result<ServerId, ControlError> {
        self.run("move_target", best_target(self.pool(), tenant, avoid))
            .await
    }

    /// Takes a provisioning tenant off `server`, which this process cannot reach, before
    /// anything of it was made there: its claimed spare goes back to the pool, and the next
    /// attempt places it again. A tenant no longer on `server` is left as it is.
    pub async fn unplace(&self, org_id: &OrgId, server: &ServerId) -> Result<(), ControlError> {
        self.run("unplace", async {
            let mut tx = self.begin().await?;
            let tenant = lock_tenant(&mut tx, org_id).await?;
            if tenant.server_id.as_ref() != Some(server) {
                return Ok(());
            }
            release_spare(&mut tx, org_id).await?;
            clear_server(&mut tx, org_id).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}

/// Locks the servers of `region` until the transaction ends: placements and moves of the region
/// queue here, so racing ones spread instead of all picking the same emptiest server.
pub(super) async fn lock_region(tx: &mut Tx, region: &Region) -> Result<(), ControlError> {
    sqlx::query("SELECT id FROM database_servers WHERE region = $1 ORDER BY id FOR UPDATE")
        .bind(region.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The active server of `region` with the least load and room left, other than `besides` and
/// those in `avoid`.
async fn least_loaded(
    executor: impl sqlx::PgExecutor<'_>,
    region: &Region,
    besides: Option<&ServerId>,
    avoid: &[ServerId],
) -> Result<Option<ServerId>, ControlError> {
    let chosen: Option<String> = sqlx::query_scalar(sql(format!(
        "SELECT s.id FROM database_servers s, LATERAL (SELECT {SERVER_LOAD} AS n) load
         WHERE s.region = $1 AND s.state = 'active' AND s.id IS DISTINCT FROM $2
           AND s.id <> ALL($3) AND load.n < s.capacity
         ORDER BY load.n, s.id LIMIT 1"
    )))
    .bind(region.as_str())
    .bind(besides.map(ServerId::as_str))
    .bind(avoid.iter().map(ServerId::as_str).collect::<Vec<_>>())
    .fetch_optional(executor)
    .await?;
    chosen
        .map(|id| id.parse().map_err(ControlError::corrupt))
        .transpose()
}

/// The server a new tenant of `region` goes to: active, with room, least loaded, not one of
/// `avoid` (servers the placing process cannot reach); the region's servers locked until the
/// transaction ends (see [`lock_region`]).
pub(super) async fn choose_server(
    tx: &mut Tx,
    region: &Region,
    avoid: &[ServerId],
) -> Result<Option<ServerId>, ControlError> {
    lock_region(tx, region).await?;
    least_loaded(&mut **tx, region, None, avoid).await
}

/// The best server for the tenant to move to: active, in its region, not its server, with room,
/// least loaded.
pub(super) async fn best_target(
    executor: impl sqlx::PgExecutor<'_>,
    tenant: &Tenant,
    avoid: &[ServerId],
) -> Result<ServerId, ControlError> {
    least_loaded(executor, &tenant.region, tenant.server_id.as_ref(), avoid)
        .await?
        .ok_or_else(|| {
            ControlError::conflict(
                ErrorCode::InvalidTarget,
                format!(
                    "no other active server in region {} has room for tenant {}",
                    tenant.region, tenant.org_id
                ),
            )
        })
}

/// The move's target can take the tenant: active, in its region, not its server, and with room
/// (its row locked until the commit).
pub(super) async fn check_target(
    tx: &mut Tx,
    tenant: &Tenant,
    target: &ServerId,
) -> Result<(), ControlError> {
    let row: Option<(String, String, i32, i64)> = sqlx::query_as(sql(format!(
        "SELECT s.region, s.state, s.capacity, {SERVER_LOAD}
         FROM database_servers s WHERE s.id = $1 FOR UPDATE OF s"
    )))
    .bind(target.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((region, state, capacity, taken)) = row else {
        return Err(ControlError::NotFound {
            what: format!("server {target}"),
        });
    };
    let refuse = |why: String| Err(ControlError::conflict(ErrorCode::InvalidTarget, why));
    if tenant.server_id.as_ref() == Some(target) {
        return refuse(format!(
            "tenant {} is on server {target} already",
            tenant.org_id
        ));
    }
    if region != tenant.region.as_str() {
        return refuse(format!(
            "server {target} is in region {region}, tenant {} in {}",
            tenant.org_id, tenant.region
        ));
    }
    if state != "active" {
        return refuse(format!("server {target} is {state}: it takes no tenants"));
    }
    if taken >= i64::from(capacity) {
        return refuse(format!(
            "server {target} is full ({taken} of {capacity} places taken, counting moves heading \
             there)"
        ));
    }
    Ok(())
}
