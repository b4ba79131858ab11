//! `provision`: a new tenant's database. Placed on a server, a spare of the server's warm pool
//! claimed when there is one, its role created (or the spare's renamed), its database taken
//! from the spare (renamed) or else cloned from the template, locked down, then the tenant is
//! active (and its first admin's activation queued, when it names one) once its role has the
//! app's privileges there and has connected as the tenant: `activate` does these last two while
//! its registry transaction is under way, and commits it once they succeeded.
//!
//! Onboarding places the tenant and claims its spare in the request's own transaction (see
//! `Store::create_tenant`), so the operation usually starts at `role`; `place` and
//! `claim_spare` run when it could not place it then.
//!
//! A claimed spare is made the tenant's in one transaction on its server by the `role` step
//! (role, database, lockdown at once: see `ServerAdmin::adopt_spare`); the `database` and
//! `lockdown` steps of that run then have nothing to do. Each step says whether its work is
//! worth recording as the operation's advance ([`Advance`]): these steps, a clone's `database`
//! and `lockdown` are not; after a crash they repeat their own parts, which find the work done
//! at the cost of a few reads (the clone is found and taken, being the tenant's; the lockdown is
//! done again, for what it cost the first time). The spare's record goes when the tenant is
//! activated. What a run learns on its way is its [`Run`].

use tenancy_core::{OperationKind, Step};
use tracing::{info, warn};

use super::{Advance, StepContext};
use crate::error::ControlError;
use crate::store::{Finish, Spare};

/// What one run of a provisioning learns on its way, so that its later steps neither read it
/// again nor redo it. A new run (after a crash or a retry) starts empty and reads what it
/// needs.
#[derive(Default)]
pub(crate) struct Run {
    /// The warm-pool spare this provisioning claimed, once read: only its onboarding and its
    /// own `claim_spare` step claim one, so one read serves the steps of a run.
    pub claimed_spare: Option<Option<Spare>>,
    /// Whether this run's `role` step made the claimed spare the tenant's whole (see
    /// `ServerAdmin::adopt_spare`), leaving nothing on the server to the steps after it.
    spare_adopted: bool,
    /// Whether this run's `lockdown` found the tenant's role holding the app's privileges
    /// already (a spare's role made the tenant's), which spares `activate` granting them.
    privileges_granted: bool,
}

pub(super) async fn run(cx: &mut StepContext<'_>, step: Step) -> Result<Advance, ControlError> {
    if cx.tenant.server_id.is_none() && step != Step::Place {
        // Taken off a server this process cannot reach (see below): placed again first.
        let avoid = cx.admins.unreachable();
        cx.tenant.server_id = Some(cx.store.place(&cx.tenant.org_id, &avoid).await?);
    }
    let result = run_step(cx, step).await;
    // Nothing of the tenant is on a server this process cannot reach before `lockdown`: the
    // tenant is taken off it, and the retry places it on one this process can reach.
    if let (Err(ControlError::UnknownServer { server, .. }), Step::Role | Step::Database) =
        (&result, step)
    {
        warn!(org_id = %cx.tenant.org_id, %server, "placed on a server this process cannot reach; placing again");
        cx.store.unplace(&cx.tenant.org_id, server).await?;
    }
    result
}

async fn run_step(cx: &mut StepContext<'_>, step: Step) -> Result<Advance, ControlError> {
    let db = &cx.tenant.db_name.clone();
    let role = cx.tenant.role_name();
    match step {
        Step::Place => {
            let server = cx
                .store
                .place(&cx.tenant.org_id, &cx.admins.unreachable())
                .await?;
            cx.tenant.server_id = Some(server);
            Ok(Advance::Record)
        }
        Step::Role => {
            let Some(spare) = claimed(cx).await? else {
                // A clone's role is made beside the clone, by `database`.
                return Ok(Advance::Skip);
            };
            let password = cx.password().await?;
            let admin = cx.admin().await?;
            if spare.has_role {
                let tenant = (db, &role);
                let limits = cx.limits()?;
                let org_id = &cx.tenant.org_id;
                if admin
                    .adopt_spare(&spare.db_name, tenant, &password, limits, org_id)
                    .await?
                {
                    cx.provision.spare_adopted = true;
                    // A repeat finds the spare gone and the role the tenant's: a few reads.
                    return Ok(Advance::Skip);
                }
                admin
                    .adopt_spare_role(&spare.db_name, &role, &cx.tenant.org_id)
                    .await?;
            }
            admin
                .ensure_role(&role, &password, cx.limits()?, &cx.tenant.org_id, true)
                .await?;
            Ok(Advance::Record)
        }
        Step::ClaimSpare => claim_spare(cx).await.map(|()| Advance::Record),
        Step::Database => database(cx).await,
        Step::Lockdown => lockdown(cx).await.map(|()| Advance::Skip),
        Step::Activate => activate(cx).await.map(|()| Advance::Record),
        other => Err(cx.unexpected(other)),
    }
}

/// The follow-up of a provisioning, queued as it ends: inviting the first admin it names.
fn then(cx: &StepContext<'_>) -> Option<OperationKind> {
    cx.tenant
        .admin_email
        .is_some()
        .then_some(OperationKind::ActivateAdmin)
}

/// The tenant is ready at `schema_version`.
fn provisioned(cx: &StepContext<'_>, schema_version: Option<i32>) -> Finish {
    Finish::Provisioned {
        schema_version,
        then: then(cx),
    }
}

/// Makes the database usable by the tenant and activates it, at once. The tenant's role logs
/// in (which proves that the server lets it in with its password) and, unless its role came
/// from a spare with them, is granted the app's privileges in the database by an admin session
/// that first reads the schema version there; a spare's version is the template version it was
/// cloned at (nothing migrates a tenant still provisioning). Sessions of anyone else in the
/// database are ended meanwhile (from the maintenance database: the view is slow to plan in a
/// new one). The activating transaction runs beside all this, its statements sent as soon as
/// the version is known, and commits once every part succeeded (see `Store::finish_after`).
///
/// When a fleet migration moved the server's template on since the spare or the clone was
/// made, the activating transaction refuses; the tenant's database is then migrated to the
/// template's version first, so no tenant starts at an old version (a migration already listing
/// tenants would not see this one).
async fn activate(cx: &mut StepContext<'_>) -> Result<(), ControlError> {
    let admin = cx.admin().await?;
    let password = cx.password().await?;
    let (db, role) = (cx.tenant.db_name.clone(), cx.tenant.role_name());
    let login = admin.verify_login(&db, &role, &password);
    let others = admin.end_other_sessions(&db, &role);
    let spare_version = match claimed(cx).await? {
        Some(spare) if cx.provision.privileges_granted => Some(spare.template_version),
        _ => None,
    };
    let activated = match spare_version {
        Some(version) => {
            let effect = provisioned(cx, Some(version));
            let check = async { tokio::try_join!(login, others).map(drop) };
            cx.finish_after(std::future::ready(Ok(effect)), check).await
        }
        None => {
            // The session the version is read on grants the privileges: handed from the one
            // future to the other once the version is known. Should the first fail, its error
            // ends the transaction and the second has nothing to do.
            let (session_tx, session_rx) = tokio::sync::oneshot::channel();
            let then = then(cx);
            let effect = async {
                let (session, ()) = tokio::try_join!(admin.app_session(&db), login)?;
                let schema_version = session.version();
                let _ = session_tx.send(session);
                Ok(Finish::Provisioned {
                    schema_version,
                    then,
                })
            };
            let check = async {
                match session_rx.await {
                    Ok(session) => tokio::try_join!(session.grant(&role), others).map(drop),
                    Err(_) => Ok(()),
                }
            };
            cx.finish_after(effect, check).await
        }
    };
    let mut ahead = match activated {
        Err(ControlError::TemplateAhead { version, .. }) => version,
        done => return done,
    };
    loop {
        info!(
            template_version = ahead,
            "the template moved on during provisioning; migrating the tenant's database"
        );
        let reached = cx.admin().await?.migrate(db.as_str(), Some(ahead)).await?;
        if reached < ahead {
            // An older binary than the one that migrated the template: do not loop.
            return Err(ControlError::Migration(format!(
                "the template is at version {ahead}, this build migrates up to {reached}"
            )));
        }
        metrics::counter!("tenancy_provision_template_catch_ups_total").increment(1);
        let effect = provisioned(cx, Some(reached));
        match cx.finish(effect).await {
            Err(ControlError::TemplateAhead { version, .. }) => ahead = version,
            done => return done,
        }
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
    cx.provision.claimed_spare = Some(spare);
    Ok(())
}

/// The spare this provisioning claimed, read once per run (see [`Run::claimed_spare`]).
async fn claimed(cx: &mut StepContext<'_>) -> Result<Option<Spare>, ControlError> {
    if let Some(known) = &cx.provision.claimed_spare {
        return Ok(known.clone());
    }
    let found = cx.store.claimed_spare(&cx.tenant.org_id).await?;
    cx.provision.claimed_spare = Some(found.clone());
    Ok(found)
}

/// The tenant's database: the spare it claimed, renamed, else a clone of the template, made
/// while the tenant's role is (neither needs the other).
async fn database(cx: &mut StepContext<'_>) -> Result<Advance, ControlError> {
    if cx.provision.spare_adopted {
        return Ok(Advance::Skip);
    }
    let admin = cx.admin().await?;
    if let Some(spare) = claimed(cx).await? {
        let (db, org_id) = (&cx.tenant.db_name, &cx.tenant.org_id);
        admin
            .adopt_spare_database(&spare.db_name, db, org_id)
            .await?;
        return Ok(Advance::Record);
    }
    // A repeat finds the role and the clone, and takes the clone (closed and untagged until the
    // lockdown opens it to the tenant, tagged for it after): nothing to record.
    let password = cx.password().await?;
    let role = cx.tenant.role_name();
    let (org_id, db, limits) = (&cx.tenant.org_id, &cx.tenant.db_name, cx.limits()?);
    // Both run to their end, also when one fails: a clone is never cut off halfway.
    let (made_role, cloned) = tokio::join!(
        admin.ensure_role(&role, &password, limits, org_id, true),
        admin.create_database(db, org_id),
    );
    match (made_role, cloned) {
        // A refused role (one that is not the tenant's) leaves no clone behind: nothing has
        // connected to it, nothing else knows it.
        (Err(refused), Ok(true)) => {
            admin.drop_database(db).await?;
            Err(refused)
        }
        (made_role, cloned) => made_role.and(cloned).map(|_| Advance::Skip),
    }
}

/// Locks the database down for the tenant: open to its role alone (see
/// `ServerAdmin::open_to`). A claimed spare whose role became the tenant's (the spare's role is
/// gone: renamed) has the template's privileges already, which spares `activate` granting
/// them. Cheap to repeat: nothing is recorded.
async fn lockdown(cx: &mut StepContext<'_>) -> Result<(), ControlError> {
    if cx.provision.spare_adopted {
        cx.provision.privileges_granted = true;
        return Ok(());
    }
    let claimed = claimed(cx).await?;
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
    let (db, role) = (&cx.tenant.db_name, cx.tenant.role_name());
    admin.open_to(db, &role, &cx.tenant.org_id).await?;
    admin
        .set_temp_tables(db, &role, cx.temp_tables(true, false)?)
        .await?;
    cx.provision.privileges_granted = role_adopted;
    Ok(())
}
