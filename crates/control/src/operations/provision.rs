//! `provision`: a new tenant's database. Placed on a server, its role created, its database
//! taken from the server's warm pool (a spare claimed and renamed) or else cloned from the
//! template, locked down, verified by connecting as the tenant, then the tenant is active (and
//! its first admin's activation queued, when it names one).

use tenancy_core::{ProvisionPath, Step};

use super::StepContext;
use crate::error::ControlError;
use crate::store::Finish;

pub(super) const STEPS: &[Step] = &[
    Step::Place,
    Step::Role,
    Step::ClaimSpare,
    Step::Database,
    Step::Lockdown,
    Step::Verify,
    Step::Activate,
];

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<(), ControlError> {
    let db = &cx.tenant.db_name;
    let role = cx.tenant.role_name();
    match step {
        Step::Place => {
            let server = cx.store.place(&cx.tenant.org_id).await?;
            cx.tenant.server_id = Some(server);
            Ok(())
        }
        Step::Role => {
            let password = cx.password().await?;
            cx.admin()
                .await?
                .ensure_role(&role, &password, cx.limits()?, &cx.tenant.org_id, true)
                .await
        }
        Step::ClaimSpare => claim_spare(cx).await,
        Step::Database => database(cx).await,
        Step::Lockdown => cx.admin().await?.lockdown(db, &role).await,
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
    let org_id = &cx.tenant.org_id;
    if !cx.config.warm_pool_on() || cx.store.claimed_spare(org_id).await?.is_some() {
        return Ok(());
    }
    let admin = cx.admin().await?;
    if admin.database_exists(&cx.tenant.db_name).await? {
        return Ok(());
    }
    let claimed = cx.store.claim_spare(org_id, admin.id()).await?;
    let path = if claimed.is_some() {
        ProvisionPath::Warm
    } else {
        ProvisionPath::Cold
    };
    metrics::counter!("tenancy_warm_pool_claims_total", "path" => path.as_str()).increment(1);
    Ok(())
}

/// The tenant's database: the spare it claimed, renamed (its record goes, and the operation
/// records the warm path, in one transaction), else a clone of the template.
async fn database(cx: &mut StepContext<'_>) -> Result<(), ControlError> {
    let admin = cx.admin().await?;
    let org_id = &cx.tenant.org_id;
    let db = &cx.tenant.db_name;
    match cx.store.claimed_spare(org_id).await? {
        Some(spare) => {
            admin.adopt_spare(&spare.db_name, db, org_id).await?;
            cx.store.spare_taken(&spare.db_name, cx.op.id).await
        }
        None => {
            admin.create_database(db, org_id).await?;
            cx.store.set_cold_path(cx.op.id).await
        }
    }
}
