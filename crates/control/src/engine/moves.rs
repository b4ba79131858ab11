//! Moving tenants between servers: one tenant (`move_tenant`, `undo_move`), and the plans
//! `tenantctl` runs for a whole server (drain) or a region (rebalance). The moves themselves
//! are operations (`operations::move_tenant`).

use std::collections::BTreeMap;

use tenancy_core::{
    ErrorCode, MoveMode, MoveTenant, Operation, OrgId, Region, ServerId, ServerState, TenantMove,
    TenantSelector,
};
use tracing::{info, instrument, warn};

use super::Engine;
use crate::error::ControlError;
use crate::store::{Actor, LockName, MOVABLE, NewMove, Requested, TenantFilter};

/// What `rebalance` evens out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Tenants per server.
    Tenants,
    /// Bytes of tenant databases per server.
    Size,
}

/// One move a drain or a rebalance proposes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedMove {
    pub org_id: OrgId,
    pub from: ServerId,
    /// `None`: placement chooses when the move is asked for.
    pub to: Option<ServerId>,
    /// The database's size in bytes, when known.
    pub bytes: Option<i64>,
}

impl Engine {
    /// Queues a move of the tenant to `request.server_id` (or to the server placement chooses
    /// in its region) after checking what it needs: the client tools, versions, and for an
    /// online move `wal_level = logical` and replicable tables. Without a `mode`, online is
    /// chosen when possible, else offline; asking for online when it is not possible is
    /// refused.
    #[instrument(skip(self, request, actor), fields(%org_id))]
    pub async fn move_tenant(
        &self,
        org_id: &OrgId,
        request: &MoveTenant,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        let tenant = self.tenant(org_id).await?;
        if !MOVABLE.contains(&tenant.status) {
            return Err(ControlError::conflict(
                ErrorCode::InvalidState,
                format!("cannot move tenant {org_id} while it is {}", tenant.status),
            ));
        }
        // A fleet migration changes schemas under way, which an online move's copy would miss;
        // it skips tenants with a move under way, and moves wait for it to end.
        if self.store().lock_held(&LockName::FleetMigration).await? {
            return Err(ControlError::conflict(
                ErrorCode::MigrationRunning,
                "a fleet migration is running: move once it has finished",
            ));
        }
        let source = tenant.server_id.clone().ok_or_else(|| {
            ControlError::conflict(
                ErrorCode::NotPlaced,
                format!("tenant {org_id} has no database yet"),
            )
        })?;
        // Moves to a chosen server queue per region, from choice to record, so that concurrent
        // requests (a drain's) spread instead of all choosing the same emptiest server.
        let placing = match &request.server_id {
            Some(_) => None,
            None => Some(
                self.store()
                    .lock(&LockName::MovePlacement(tenant.region.clone()))
                    .await?,
            ),
        };
        let avoid = self.admins().unreachable();
        let mut target = match &request.server_id {
            Some(target) => target.clone(),
            None => self.store().move_target(&tenant, &avoid).await?,
        };
        // A chosen target another request took room on meanwhile is chosen again (a few times).
        for _ in 0..5 {
            let mode = self
                .move_mode(&tenant, &source, &target, request.mode)
                .await?;
            let new = NewMove {
                source: &source,
                target: &target,
                target_chosen: request.server_id.is_none(),
                mode,
                mode_requested: request.mode.is_some(),
                avoid: &avoid,
            };
            match self.store().request_move(org_id, new, actor).await? {
                Requested::Queued(op) => {
                    if let Some(lock) = placing {
                        lock.release().await;
                    }
                    info!(op_id = %op.id, %source, %target, mode = %mode, "move queued");
                    return Ok(op);
                }
                // An onboarding placed a tenant there meanwhile.
                Requested::Elsewhere(better) => target = better,
            }
        }
        Err(ControlError::conflict(
            ErrorCode::OperationInProgress,
            format!("placement for tenant {org_id}'s move kept changing; ask again"),
        ))
    }

    /// The mode a move from `source` to `target` runs in, after checking what it needs.
    async fn move_mode(
        &self,
        tenant: &tenancy_core::Tenant,
        source: &ServerId,
        target: &ServerId,
        requested: Option<MoveMode>,
    ) -> Result<MoveMode, ControlError> {
        if target == source {
            return Err(ControlError::conflict(
                ErrorCode::InvalidTarget,
                format!("tenant {} is on server {target} already", tenant.org_id),
            ));
        }
        let (source_admin, target_admin) = (
            self.admins().get(source).await?,
            self.admins().get(target).await?,
        );
        let online = crate::operations::move_requirements(
            self.config(),
            &source_admin,
            &target_admin,
            &tenant.db_name,
        )
        .await?;
        Ok(match (requested, online) {
            (Some(MoveMode::Online), Err(why)) => {
                return Err(ControlError::move_unsupported(format!(
                    "an online move is not possible: {why}; ask for mode offline"
                )));
            }
            (Some(mode), _) => mode,
            (None, Ok(())) => MoveMode::Online,
            (None, Err(why)) => {
                info!(%why, "online move not possible: moving offline");
                MoveMode::Offline
            }
        })
    }

    /// Cancels the tenant's move if it has not switched yet: its worker abandons it at its
    /// next check (within a second while it waits for the target to catch up), leaving the
    /// tenant on its source, writable as before, and the target's copy dropped. Returns the
    /// move's operation (it ends `failed`, `cancelled`).
    pub async fn cancel_move(
        &self,
        org_id: &OrgId,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        self.store().cancel_move(org_id, actor).await
    }

    /// Moves the tenant back to where its last move took it from, while that move's source
    /// copy is still kept (a fresh move: the kept copy is older than the tenant's data).
    pub async fn undo_move(
        &self,
        org_id: &OrgId,
        actor: &Actor,
    ) -> Result<Operation, ControlError> {
        let last = self
            .store()
            .tenant_moves(org_id, 1)
            .await?
            .into_iter()
            .next()
            .filter(|m| m.switched_at.is_some())
            .ok_or_else(|| {
                ControlError::conflict(
                    ErrorCode::InvalidState,
                    format!("tenant {org_id} has no finished move to undo"),
                )
            })?;
        let within = last
            .retained_until
            .is_some_and(|until| until > chrono::Utc::now());
        if !within {
            return Err(ControlError::conflict(
                ErrorCode::InvalidState,
                format!(
                    "tenant {org_id}'s last move ({}) is past its retention: move it explicitly instead",
                    last.operation_id
                ),
            ));
        }
        let request = MoveTenant {
            server_id: Some(last.source_server_id),
            mode: None,
        };
        self.move_tenant(org_id, &request, actor).await
    }

    /// The tenant's moves, newest first.
    pub async fn tenant_moves(
        &self,
        org_id: &OrgId,
        limit: i64,
    ) -> Result<Vec<TenantMove>, ControlError> {
        self.tenant(org_id).await?;
        self.store().tenant_moves(org_id, limit).await
    }

    /// The moves that empty `server` of its live tenants (targets chosen when each is asked
    /// for). Deleted tenants stay until purged; tenants that cannot move now (provisioning,
    /// failed, deleting) are returned apart.
    pub async fn drain_plan(
        &self,
        server: &ServerId,
    ) -> Result<(Vec<PlannedMove>, Vec<OrgId>), ControlError> {
        let filter = TenantFilter::from(TenantSelector {
            server_id: Some(server.clone()),
            ..Default::default()
        });
        let mut moves = Vec::new();
        let mut stuck = Vec::new();
        for tenant in self.store().all_tenants(&filter).await? {
            if MOVABLE.contains(&tenant.status) {
                moves.push(PlannedMove {
                    org_id: tenant.org_id,
                    from: server.clone(),
                    to: None,
                    bytes: None,
                });
            } else if tenant.status != tenancy_core::TenantStatus::Deleted {
                stuck.push(tenant.org_id);
            }
        }
        Ok((moves, stuck))
    }

    /// Moves from the fullest active servers of `region` to the emptiest until each is within
    /// `spread` (a fraction of the mean) of the mean, by tenant count or database size.
    /// Targets keep under capacity; a move that would not narrow the gap is not proposed.
    pub async fn rebalance_plan(
        &self,
        region: &Region,
        by: Balance,
        spread: f64,
    ) -> Result<Vec<PlannedMove>, ControlError> {
        let servers: Vec<_> = self
            .servers()
            .await?
            .into_iter()
            .filter(|s| &s.region == region && s.state == ServerState::Active)
            .collect();
        if servers.len() < 2 {
            return Ok(Vec::new());
        }
        // Each server's movable tenants with their weight (1, or the database's bytes).
        let mut load: BTreeMap<ServerId, Vec<(OrgId, i64)>> = BTreeMap::new();
        let mut capacity: BTreeMap<ServerId, i64> = BTreeMap::new();
        let mut counts: BTreeMap<ServerId, i64> = BTreeMap::new();
        for server in &servers {
            let sizes: BTreeMap<String, i64> = match by {
                Balance::Tenants => BTreeMap::new(),
                Balance::Size => self
                    .admins()
                    .get(&server.id)
                    .await?
                    .sample_usage()
                    .await?
                    .into_iter()
                    .map(|(db, bytes, _)| (db, bytes))
                    .collect(),
            };
            let filter = TenantFilter::from(TenantSelector {
                server_id: Some(server.id.clone()),
                ..Default::default()
            });
            let tenants = self.store().all_tenants(&filter).await?;
            counts.insert(server.id.clone(), tenants.len() as i64);
            capacity.insert(server.id.clone(), i64::from(server.capacity));
            let movable = tenants
                .into_iter()
                .filter(|t| MOVABLE.contains(&t.status))
                .map(|t| {
                    let weight = match by {
                        Balance::Tenants => 1,
                        Balance::Size => sizes.get(t.db_name.as_str()).copied().unwrap_or(0),
                    };
                    (t.org_id, weight)
                })
                .collect();
            load.insert(server.id.clone(), movable);
        }
        let total = |tenants: &Vec<(OrgId, i64)>| tenants.iter().map(|(_, w)| w).sum::<i64>();
        let mean = load.values().map(total).sum::<i64>() as f64 / load.len() as f64;
        // By count, as even as whole tenants allow whatever the spread.
        let allowed = (mean * spread).max(match by {
            Balance::Tenants => 0.5,
            Balance::Size => 0.0,
        });
        let mut plan = Vec::new();
        loop {
            let weights: BTreeMap<&ServerId, i64> =
                load.iter().map(|(s, t)| (s, total(t))).collect();
            let (fullest, high) = weights
                .iter()
                .max_by_key(|(s, w)| (**w, std::cmp::Reverse(**s)))
                .map(|(s, w)| ((*s).clone(), *w))
                .expect("two servers");
            let emptiest = weights
                .iter()
                .filter(|(s, _)| counts[**s] < capacity[**s])
                .min_by_key(|(s, w)| (**w, **s))
                .map(|(s, w)| ((*s).clone(), *w));
            let Some((emptiest, low)) = emptiest else {
                break;
            };
            if fullest == emptiest
                || ((high as f64) - mean <= allowed && mean - (low as f64) <= allowed)
            {
                break;
            }
            // The tenant that best narrows the gap: the largest not over half of it.
            let gap = high - low;
            let candidates = &load[&fullest];
            let Some(pick) = candidates
                .iter()
                .enumerate()
                .filter(|(_, (o, w))| {
                    *w * 2 <= gap && *w > 0 && !plan.iter().any(|p: &PlannedMove| &p.org_id == o)
                })
                .max_by_key(|(_, (_, w))| *w)
                .map(|(i, _)| i)
            else {
                break;
            };
            let (org_id, weight) = load.get_mut(&fullest).expect("fullest").remove(pick);
            *counts.get_mut(&fullest).expect("fullest") -= 1;
            *counts.get_mut(&emptiest).expect("emptiest") += 1;
            load.get_mut(&emptiest)
                .expect("emptiest")
                .push((org_id.clone(), weight));
            plan.push(PlannedMove {
                org_id,
                from: fullest,
                to: Some(emptiest),
                bytes: (by == Balance::Size).then_some(weight),
            });
        }
        Ok(plan)
    }

    /// Drops the source copies moves kept once their retention ran out (the maintenance loop
    /// does this every `reconcile_interval`).
    pub async fn drop_retained_sources(&self) -> Result<(), ControlError> {
        for kept in self.store().retained_sources_due().await? {
            let dropped = async {
                self.admins()
                    .get(&kept.server_id)
                    .await?
                    .drop_retained(&kept.db_name)
                    .await?;
                self.store()
                    .retained_source_dropped(kept.operation_id)
                    .await
            }
            .await;
            match dropped {
                Ok(()) => {
                    info!(server_id = %kept.server_id, db_name = %kept.db_name, "moved tenant's source copy dropped after retention")
                }
                Err(e) => {
                    warn!(server_id = %kept.server_id, db_name = %kept.db_name, error = %e, "could not drop a moved tenant's source copy")
                }
            }
        }
        Ok(())
    }
}
