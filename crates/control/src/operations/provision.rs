//! `provision`: a new tenant's database. Placed on a server, a spare of the server's warm pool
//! claimed when there is one, its role created (or the spare's renamed), its database taken
//! from the spare (renamed) or else cloned from the template, locked down, verified by
//! connecting as the tenant, then the tenant is active (and its first admin's activation
//! queued, when it names one).
//!
//! A claimed spare is made the tenant's in one transaction on its server by the `role` step
//! (role, database, lockdown at once: see `ServerAdmin::adopt_spare`); the `database` and
//! `lockdown` steps of that run then only record it. After a crash they repeat their own parts,
//! which find the work done.

use tenancy_core::{ProvisionPath, Step};

use super::StepContext;
use crate::error::ControlError;
use crate::store::{Finish, Spare};

pub(super) const STEPS: &[Step] = &[
    Step::Place,
    Step::ClaimSpare,
    Step::Role,
    Step::Database,
    Step::Lockdown,
    Step::Verify,
    Step::Activate,
];

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    let db = &cx.tenant.db_name.clone();
    let role = cx.tenant.role_name();
    match step {
        Step::Place => {
            let server = cx.store.place(&cx.tenant.org_id).await?;
            cx.tenant.server_id = Some(server);
            Ok(())
        }
        Step::Role => {
            let password = cx.password().await?;
            let admin = cx.admin().await?;
            if let Some(spare) = claimed(cx).await?
                && spare.has_role
            {
                let tenant = (db, &role);
                let limits = cx.limits()?;
                let org_id = &cx.tenant.org_id;
                if admin
                    .adopt_spare(&spare.db_name, tenant, &password, limits, org_id)
                    .await?
                {
                    cx.spare_adopted = true;
                    return Ok(());
                }
                admin
                    .adopt_spare_role(&spare.db_name, &role, &cx.tenant.org_id)
                    .await?;
            }
            admin
                .ensure_role(&role, &password, cx.limits()?, &cx.tenant.org_id, true)
                .await
        }
        Step::ClaimSpare => claim_spare(cx).await,
        Step::Database => database(cx).await,
        Step::Lockdown => lockdown(cx).await,
        Step::Verify => {
            let password = cx.password().await?;
            let version = cx
                .admin()
                .await?
                .verify_tenant(db, &role, &password)
                .await?;
            cx.store
                .set_schema_version(&cx.tenant.org_id, version)
                .await
        }
        Step::Activate => cx.finish(Finish::Provisioned).await,
        other => Err(cx.unexpected(other)),
    }
}

/// Claims a spare of the warm pool on the tenant's server for it, if the pool has one and no
/// database of the tenant's name exists (an interrupted clone is finished as a clone). The claim
/// is one committed transaction; the next step renames what it claimed.
async fn claim_spare(cx: &mut StepContext<'_>) -> Result<(), ControlError> {
    if !cx.config.warm_pool_on() || claimed(cx).await?.is_some() {
        return Ok(());
    }
    let admin = cx.admin().await?;
    if admin.database_exists(&cx.tenant.db_name).await? {
        return Ok(());
    }
    let spare = cx.store.claim_spare(&cx.tenant.org_id, admin.id()).await?;
    let path = if spare.is_some() {
        ProvisionPath::Warm
    } else {
        ProvisionPath::Cold
    };
    metrics::counter!("tenancy_warm_pool_claims_total", "path" => path.as_str()).increment(1);
    cx.claimed_spare = Some(spare);
    Ok(())
}

/// The spare this provisioning claimed, read once per run (see `StepContext::claimed_spare`).
async fn claimed(cx: &mut StepContext<'_>) -> Result<Option<Spare>, ControlError> {
    if let Some(known) = &cx.claimed_spare {
        return Ok(known.clone());
    }
    let found = cx.store.claimed_spare(&cx.tenant.org_id).await?;
    cx.claimed_spare = Some(found.clone());
    Ok(found)
}

/// The tenant's database: the spare it claimed, renamed, else a clone of the template.
async fn database(cx: &mut StepContext<'_>) -> Result<(), ControlError> {
    if cx.spare_adopted {
        return Ok(());
    }
    let admin = cx.admin().await?;
    let claimed = claimed(cx).await?;
    let org_id = &cx.tenant.org_id;
    let db = &cx.tenant.db_name;
    match claimed {
        Some(spare) => admin.adopt_spare_database(&spare.db_name, db, org_id).await,
        None => {
            admin.create_database(db, org_id).await?;
            cx.store.set_cold_path(cx.op.id).await
        }
    }
}

/// Locks the database down for the tenant. A claimed spare whose role became the tenant's (the
/// spare's role is gone: renamed) has the template's privileges already, so no connection into
/// the database is needed. Then the spare's record goes, and the operation records the warm
/// path, in one transaction.
async fn lockdown(cx: &mut StepContext<'_>) -> Result<(), ControlError> {
    let claimed = claimed(cx).await?;
    if cx.spare_adopted
        && let Some(spare) = claimed
    {
        return spare_taken(cx, &spare).await;
    }
    let admin = cx.admin().await?;
    let role_adopted = match &claimed {
        Some(spare) if spare.has_role => {
            let spare_role = spare
                .db_name
                .as_str()
                .parse()
                .map_err(ControlError::corrupt)?;
            !admin.role_exists(&spare_role).await?
        }
        _ => false,
    };
    admin
        .lockdown_with(&cx.tenant.db_name, &cx.tenant.role_name(), !role_adopted)
        .await?;
    match claimed {
        Some(spare) => spare_taken(cx, &spare).await,
        None => Ok(()),
    }
}

/// The spare's record goes and the operation records the warm path, in one transaction.
async fn spare_taken(cx: &mut StepContext<'_>, spare: &Spare) -> Result<(), ControlError> {
    cx.store.spare_taken(&spare.db_name, cx.op.id).await?;
    cx.claimed_spare = Some(None);
    Ok(())
}
