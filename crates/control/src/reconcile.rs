//! The reconciler: compares the registry with what exists on each server, tenant by tenant, and
//! reports or repairs the differences. It never invents data and never drops a database:
//!
//! - a tenant whose database is gone is marked failed, with the reason, and counted in
//!   `tenancy_tenants_missing_database` (a server entry pointing at the wrong cluster must not
//!   hand out empty databases);
//! - a tenant whose server disagrees with its status (an active tenant that cannot connect, a
//!   suspended one that can, a role whose attributes, memberships or password someone changed)
//!   gets a `converge` operation, so the repair is serialized with the tenant's other operations;
//! - `tenant_*` roles no tenant owns are dropped only by an explicit full repair
//!   (`tenantctl reconcile --repair`); orphan databases only ever reported.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use secrecy::ExposeSecret;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tenancy_core::{DbName, OperationKind, OrgId, RoleName, ServerId, Tenant, TenantStatus};

use crate::admins::ServerAdmins;
use crate::config::Config;
use crate::error::ControlError;
use crate::pgadmin::{DatabasePrivileges, Inventory, READ_ONLY_SETTING, tagged_org, tier_settings};
use crate::secrets::{self, Keyring};
use crate::store::{Actor, Store, TenantFilter};

/// How much a reconciliation may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// Report only.
    Nothing,
    /// Bring tenants back to what the registry says (the periodic run): queue lost and
    /// converging operations, mark tenants whose database is gone as failed. Drops nothing.
    Tenants,
    /// Also drop `tenant_*` roles no tenant owns.
    Everything,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A settled tenant's database is not on its server (the tenant is marked failed).
    MissingDatabase,
    /// A settled tenant's role is not on its server (recreated).
    MissingRole,
    /// The tenant's database or role on the server is tagged for another tenant.
    Foreign,
    /// An active tenant cannot connect, or a suspended or deleted one can (or has sessions).
    AccessMismatch,
    /// The tenant's role has privileges, memberships or a connection limit it should not.
    RoleDrift,
    /// The tenant's role has a password other than the one the registry derives.
    PasswordDrift,
    /// The tenant's database or role carries no tag (made before tags existed).
    Untagged,
    /// A `tenant_*` database no tenant owns (reported only: it may hold data).
    OrphanDatabase,
    /// A `tenant_*` role no tenant owns.
    OrphanRole,
    /// A `spare_*` database the warm pool does not record (a clone a crash left; holds nothing
    /// of value), or a recorded spare that is gone.
    UntrackedSpare,
    /// A spare that allows connections, or that PUBLIC may connect to.
    SpareNotLockedDown,
    /// A replication slot a move made (`tenancy_move_*`) that no move under way owns: it keeps
    /// WAL on the server until dropped, and can fill its disk.
    OrphanReplicationSlot,
    /// A tenant in a transitional status with no operation to move it on.
    StuckTenant,
    /// An active client of an agency that is not active (suspended, being deleted, deleted):
    /// the agency's cascade did not reach it. Reported only; suspend or delete it, or the
    /// agency's operation is still to run.
    ClientOfInactiveAgency,
    /// An object in the backup store that the backup catalog (or the WAL archive's) does not
    /// record (reported only; a WAL segment being stored is one for a moment).
    OrphanBackupObject,
    /// A completed backup, base backup or archived segment whose object is not in the store.
    MissingBackupObject,
    /// The backup store could not be listed.
    BackupStoreUnreachable,
    /// The server could not be inspected.
    ServerUnreachable,
    /// The server's admin user may not read password verifiers (not a superuser): passwords
    /// were not checked.
    PasswordsUnchecked,
}

/// One difference between the registry and a server.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub server_id: Option<ServerId>,
    pub org_id: Option<OrgId>,
    /// The database or role concerned.
    pub name: String,
    pub detail: String,
    /// Whether this run repaired it (or queued the operation that does).
    pub repaired: bool,
}

/// Verifier checks already done, so a password is recomputed only when its verifier or the
/// expected password changed (a SCRAM check costs thousands of hash rounds).
#[derive(Default)]
pub struct PasswordChecks(Mutex<HashSet<[u8; 32]>>);

impl PasswordChecks {
    fn matches(&self, password: &secrecy::SecretString, verifier: &str) -> bool {
        let key: [u8; 32] = Sha256::new()
            .chain_update(password.expose_secret().as_bytes())
            .chain_update([0])
            .chain_update(verifier.as_bytes())
            .finalize()
            .into();
        if self.0.lock().expect("checks lock").contains(&key) {
            return true;
        }
        let matches = secrets::scram_matches(password, verifier);
        if matches {
            self.0.lock().expect("checks lock").insert(key);
        }
        matches
    }
}

/// What a reconciliation reads and may change.
pub(crate) struct Reconciler<'a> {
    pub store: &'a Store,
    pub admins: &'a ServerAdmins,
    pub config: &'a Config,
    pub keyring: &'a Keyring,
    pub checks: &'a PasswordChecks,
    pub backups: &'a crate::backups::BackupStore,
    #[cfg(feature = "testing")]
    pub faults: Option<&'a std::sync::Arc<dyn crate::faults::FaultInjector>>,
}

impl Reconciler<'_> {
    pub async fn run(&self, repair: Repair) -> Result<Vec<Finding>, ControlError> {
        let mut findings = Vec::new();
        let fix = repair != Repair::Nothing;
        for tenant in self.store.stuck_tenants().await? {
            let kind = if tenant.status == TenantStatus::Deleting {
                OperationKind::Deprovision
            } else {
                OperationKind::Provision
            };
            let repaired = fix
                && self
                    .store
                    .enqueue_system(&tenant.org_id, kind)
                    .await?
                    .is_some();
            findings.push(Finding {
                kind: FindingKind::StuckTenant,
                server_id: tenant.server_id.clone(),
                org_id: Some(tenant.org_id.clone()),
                name: tenant.db_name.to_string(),
                detail: format!(
                    "tenant is {} with no operation under way; {kind} queued",
                    tenant.status
                ),
                repaired,
            });
        }
        findings.extend(self.clients_of_inactive_agencies().await?);
        let mut missing = 0;
        // A server never prepared holds nothing, and a registration that could not be prepared
        // is not sent its password again every round.
        let prepared = self.store.servers().await?.into_iter();
        for server_id in prepared
            .filter(|s| s.template_version.is_some())
            .map(|s| s.id)
        {
            let inventory = match self.admins.get(&server_id).await {
                Ok(admin) => admin.inventory().await.map(|inv| (admin, inv)),
                Err(e) => Err(e),
            };
            let (admin, inventory) = match inventory {
                Ok(found) => found,
                Err(e) => {
                    findings.push(Finding {
                        kind: FindingKind::ServerUnreachable,
                        server_id: Some(server_id.clone()),
                        org_id: None,
                        name: server_id.to_string(),
                        detail: e.to_string(),
                        repaired: false,
                    });
                    continue;
                }
            };
            #[cfg(feature = "testing")]
            if let Some(faults) = self.faults {
                faults.after_inventory(&server_id);
            }
            // The registry is read after the server, and tenants with an operation under way
            // are left to it: a status the registry records ahead of the server (a resume
            // half-done) is never "repaired" backwards.
            let tenants = self.store.all_tenants(&TenantFilter::default()).await?;
            let busy = self.store.tenants_with_open_operations().await?;
            let here: Vec<&Tenant> = tenants
                .iter()
                .filter(|t| t.server_id.as_ref() == Some(&server_id))
                .collect();
            let pairs: Vec<(RoleName, DbName)> = here
                .iter()
                .map(|t| (t.role_name(), t.db_name.clone()))
                .collect();
            let privileges = admin.database_privileges(&pairs).await?;
            if inventory.verifiers.is_none() {
                findings.push(Finding {
                    kind: FindingKind::PasswordsUnchecked,
                    server_id: Some(server_id.clone()),
                    org_id: None,
                    name: server_id.to_string(),
                    detail: "the admin user cannot read role passwords; they were not checked"
                        .into(),
                    repaired: false,
                });
            }
            for tenant in here.iter().copied().filter(|t| !busy.contains(&t.org_id)) {
                let found = self.check(tenant, &inventory, &privileges).await?;
                let Some((kind, detail)) = found else {
                    continue;
                };
                let repaired = if !fix {
                    false
                } else if kind == FindingKind::MissingDatabase {
                    // The inventory may predate the tenant's database (a provisioning or a move
                    // that ended since): asked again on the tenant's server of now, under its
                    // row's lock.
                    let admins = self.admins;
                    let still_missing = |now: Tenant| async move {
                        let Some(server) = now.server_id else {
                            return Ok(false);
                        };
                        Ok(!admins
                            .get(&server)
                            .await?
                            .database_exists(&now.db_name)
                            .await?)
                    };
                    let marked = self
                        .store
                        .mark_failed(
                            &tenant.org_id,
                            &detail,
                            &Actor::named("system:reconciler"),
                            still_missing,
                        )
                        .await?;
                    missing += i32::from(marked);
                    marked
                } else if kind == FindingKind::Foreign {
                    false
                } else {
                    self.store
                        .enqueue_system(&tenant.org_id, OperationKind::Converge)
                        .await?
                        .is_some()
                };
                findings.push(Finding {
                    kind,
                    server_id: Some(server_id.clone()),
                    org_id: Some(tenant.org_id.clone()),
                    name: tenant.db_name.to_string(),
                    detail,
                    repaired,
                });
            }
            self.orphans(
                &server_id,
                &admin,
                &inventory,
                (&tenants, &busy),
                repair,
                &mut findings,
            )
            .await;
            if let Err(e) = self.slots(&server_id, &admin, repair, &mut findings).await {
                tracing::warn!(server_id = %server_id, error = %e, "replication slots not checked");
            }
            if let Err(e) = self.spares(&server_id, &admin, &mut findings).await {
                tracing::warn!(server_id = %server_id, error = %e, "spares not checked");
            }
        }
        if let Err(e) = self.backup_objects(&mut findings).await {
            findings.push(Finding {
                kind: FindingKind::BackupStoreUnreachable,
                server_id: None,
                org_id: None,
                name: self.backups.location().to_owned(),
                detail: e.to_string(),
                repaired: false,
            });
        }
        if fix {
            metrics::gauge!("tenancy_tenants_missing_database").set(f64::from(missing));
        }
        metrics::gauge!("tenancy_drift_items")
            .set(findings.iter().filter(|f| !f.repaired).count() as f64);
        Ok(findings)
    }

    /// Active clients whose agency is not active, and has no operation under way that will
    /// carry its status to them.
    async fn clients_of_inactive_agencies(&self) -> Result<Vec<Finding>, ControlError> {
        let tenants = self.store.all_tenants(&TenantFilter::default()).await?;
        let busy = self.store.tenants_with_open_operations().await?;
        let status: HashMap<&OrgId, TenantStatus> =
            tenants.iter().map(|t| (&t.org_id, t.status)).collect();
        Ok(tenants
            .iter()
            .filter(|t| t.status == TenantStatus::Active)
            .filter_map(|client| {
                let agency = client.parent_org_id.as_ref()?;
                let agency_status = status.get(agency).copied().unwrap_or(TenantStatus::Deleted);
                (agency_status != TenantStatus::Active && !busy.contains(agency)).then(|| Finding {
                    kind: FindingKind::ClientOfInactiveAgency,
                    server_id: client.server_id.clone(),
                    org_id: Some(client.org_id.clone()),
                    name: client.db_name.to_string(),
                    detail: format!(
                        "client is active while its agency {agency} is {agency_status}"
                    ),
                    repaired: false,
                })
            })
            .collect())
    }

    /// The first difference between the tenant's registry record and its server, if any.
    async fn check(
        &self,
        tenant: &Tenant,
        inventory: &Inventory,
        privileges: &HashMap<(String, String), DatabasePrivileges>,
    ) -> Result<Option<(FindingKind, String)>, ControlError> {
        let role = tenant.role_name();
        let held = privileges
            .get(&(role.to_string(), tenant.db_name.to_string()))
            .copied()
            .unwrap_or_default();
        let blocked = match tenant.status {
            TenantStatus::Active => false,
            TenantStatus::Suspended => true,
            TenantStatus::Deleting | TenantStatus::Deleted => {
                // Kept for retention: whatever is left must be closed.
                let open = inventory
                    .roles
                    .get(role.as_str())
                    .is_some_and(|r| r.can_login)
                    || held.connect
                    || sessions(inventory, tenant) > 0;
                return Ok(open.then(|| {
                    (
                        FindingKind::AccessMismatch,
                        format!("{} tenant can still connect", tenant.status),
                    )
                }));
            }
            TenantStatus::Provisioning | TenantStatus::Failed => return Ok(None),
        };
        let ours = |tag: Option<&str>| match tagged_org(tag) {
            Some(org) => org == tenant.org_id.as_str(),
            None => true,
        };
        let Some(database) = inventory.databases.get(tenant.db_name.as_str()) else {
            return Ok(Some((
                FindingKind::MissingDatabase,
                format!(
                    "the {} tenant's database {} is not on its server; the tenant is marked \
                     failed (it is never recreated empty: check the server's configuration)",
                    tenant.status, tenant.db_name
                ),
            )));
        };
        let Some(facts) = inventory.roles.get(role.as_str()) else {
            return Ok(Some((
                FindingKind::MissingRole,
                format!("{} tenant has no role; it is recreated", tenant.status),
            )));
        };
        if !ours(database.tag.as_deref()) || !ours(facts.tag.as_deref()) {
            return Ok(Some((
                FindingKind::Foreign,
                format!(
                    "the database or role of this name is tagged for another tenant ({:?}, {:?})",
                    database.tag, facts.tag
                ),
            )));
        }
        let limits = self.config.tier_limits(&tenant.tier)?;
        let limit = limits.connection_limit;
        if facts.privileged || facts.member_of_any || facts.connection_limit != limit {
            return Ok(Some((
                FindingKind::RoleDrift,
                format!(
                    "role has {}{}connection limit {} (tier: {limit}); converging",
                    if facts.privileged {
                        "privileges it should not, "
                    } else {
                        ""
                    },
                    if facts.member_of_any {
                        "memberships, "
                    } else {
                        ""
                    },
                    facts.connection_limit
                ),
            )));
        }
        let settings = tier_settings(limits);
        let in_database: BTreeSet<String> = tenant
            .read_only
            .then(|| READ_ONLY_SETTING.to_owned())
            .into_iter()
            .collect();
        let found_in_database = facts
            .database_settings
            .get(tenant.db_name.as_str())
            .cloned()
            .unwrap_or_default();
        if facts.settings != settings || found_in_database != in_database {
            return Ok(Some((
                FindingKind::RoleDrift,
                format!(
                    "role's session settings are {:?} and {:?} in its database, not the tier's \
                     {:?} and {:?}; converging",
                    facts.settings, found_in_database, settings, in_database
                ),
            )));
        }
        if let Some(verifiers) = &inventory.verifiers {
            let credentials = self
                .store
                .credentials(&tenant.org_id)
                .await?
                .ok_or_else(|| ControlError::TenantNotFound(tenant.org_id.clone()))?;
            let password = secrets::tenant_password(self.keyring, &credentials)?;
            let matches = verifiers
                .get(role.as_str())
                .is_some_and(|v| self.checks.matches(&password, v));
            if !matches {
                return Ok(Some((
                    FindingKind::PasswordDrift,
                    "role's password is not the one the registry derives; converging".into(),
                )));
            }
        }
        let can_connect = facts.can_login && database.allow_connections && held.connect;
        if blocked && (can_connect || facts.can_login || sessions(inventory, tenant) > 0) {
            return Ok(Some((
                FindingKind::AccessMismatch,
                "suspended tenant can still connect or has sessions; blocking".into(),
            )));
        }
        if !blocked && !can_connect {
            return Ok(Some((
                FindingKind::AccessMismatch,
                "active tenant cannot connect; unblocking".into(),
            )));
        }
        let temp_tables = limits.temp_tables_for(!blocked, tenant.read_only);
        if held.temporary != temp_tables {
            return Ok(Some((
                FindingKind::RoleDrift,
                format!(
                    "role {} create temporary tables, which its tier and state {}; converging",
                    if held.temporary { "may" } else { "may not" },
                    if temp_tables { "allow" } else { "forbid" }
                ),
            )));
        }
        if database.tag.is_none() || facts.tag.is_none() {
            return Ok(Some((
                FindingKind::Untagged,
                "database or role carries no tenant tag; tagging".into(),
            )));
        }
        Ok(None)
    }

    /// `tenant_*` databases and roles no tenant names. A tenant with an operation under way
    /// (`busy`) may have its database on another server too (a move's target): that is the
    /// operation's business.
    async fn orphans(
        &self,
        server_id: &ServerId,
        admin: &crate::pgadmin::ServerAdmin,
        inventory: &Inventory,
        (tenants, busy): (&[Tenant], &HashSet<OrgId>),
        repair: Repair,
        findings: &mut Vec<Finding>,
    ) {
        let known_dbs: HashSet<&str> = tenants
            .iter()
            .filter(|t| t.server_id.as_ref() == Some(server_id) || busy.contains(&t.org_id))
            .map(|t| t.db_name.as_str())
            .collect();
        // A role any tenant names is never dropped, whichever server that tenant is on.
        let known_roles: HashSet<String> =
            tenants.iter().map(|t| t.role_name().to_string()).collect();
        let mut orphan_dbs: Vec<&String> = inventory
            .databases
            .keys()
            .filter(|db| !known_dbs.contains(db.as_str()))
            .collect();
        orphan_dbs.sort();
        for db in orphan_dbs {
            findings.push(Finding {
                kind: FindingKind::OrphanDatabase,
                server_id: Some(server_id.clone()),
                org_id: None,
                name: db.clone(),
                detail: "database belongs to no tenant; left in place (drop it by hand if it \
                         holds nothing of value)"
                    .into(),
                repaired: false,
            });
        }
        let mut orphan_roles: Vec<&String> = inventory
            .roles
            .keys()
            .filter(|r| !known_roles.contains(*r) && !inventory.databases.contains_key(*r))
            .collect();
        orphan_roles.sort();
        for role in orphan_roles {
            let repaired = repair == Repair::Everything
                && match role.parse::<RoleName>() {
                    Ok(name) => admin.drop_role(&name).await.is_ok(),
                    Err(_) => false,
                };
            findings.push(Finding {
                kind: FindingKind::OrphanRole,
                server_id: Some(server_id.clone()),
                org_id: None,
                name: role.clone(),
                detail: if repaired {
                    "role belongs to no tenant; dropped".into()
                } else {
                    "role belongs to no tenant; `tenantctl reconcile --repair` drops it".into()
                },
                repaired,
            });
        }
    }
}

impl Reconciler<'_> {
    /// The backup store's objects against the catalog: an object no row records, or a completed
    /// backup whose object is gone, is reported (never repaired: either may be evidence).
    /// Running backups are left out (their object appears when their upload completes).
    async fn backup_objects(&self, findings: &mut Vec<Finding>) -> Result<(), ControlError> {
        let mut catalog = self.store.backup_objects().await?;
        catalog.extend(self.store.archive_objects().await?);
        let mut stored: HashSet<String> = HashSet::new();
        for dir in ["tenants", "wal"] {
            stored.extend(
                self.backups
                    .list(dir)
                    .await?
                    .into_iter()
                    .map(|(key, _)| key),
            );
        }
        let recorded: HashSet<&str> = catalog.iter().map(|(key, _)| key.as_str()).collect();
        let mut orphans: Vec<&String> = stored
            .iter()
            .filter(|key| !recorded.contains(key.as_str()))
            .collect();
        orphans.sort();
        for key in orphans {
            findings.push(Finding {
                kind: FindingKind::OrphanBackupObject,
                server_id: None,
                org_id: None,
                name: key.clone(),
                detail: "object in the backup store that no backup records; left in place".into(),
                repaired: false,
            });
        }
        for (key, completed) in &catalog {
            if *completed && !stored.contains(key) {
                findings.push(Finding {
                    kind: FindingKind::MissingBackupObject,
                    server_id: None,
                    org_id: None,
                    name: key.clone(),
                    detail: "completed backup (or archived WAL) whose object is not in the store"
                        .into(),
                    repaired: false,
                });
            }
        }
        Ok(())
    }

    /// The server's replication slots that moves made against the moves under way: any other
    /// is reported, and dropped with `Repair::Everything` when no one uses it.
    async fn slots(
        &self,
        server_id: &ServerId,
        admin: &crate::pgadmin::ServerAdmin,
        repair: Repair,
        findings: &mut Vec<Finding>,
    ) -> Result<(), ControlError> {
        let slots = admin.move_slots().await?;
        if slots.is_empty() {
            return Ok(());
        }
        let owned: HashSet<String> = self
            .store
            .open_moves()
            .await?
            .into_iter()
            .map(crate::pgadmin::replication_name)
            .collect();
        for (slot, active) in slots.into_iter().filter(|(s, _)| !owned.contains(s)) {
            let repaired =
                repair == Repair::Everything && !active && admin.drop_slot(&slot).await.is_ok();
            findings.push(Finding {
                kind: FindingKind::OrphanReplicationSlot,
                server_id: Some(server_id.clone()),
                org_id: None,
                name: slot,
                detail: if repaired {
                    "replication slot of no move under way; dropped".into()
                } else {
                    "replication slot of no move under way: it holds WAL back until dropped                      (`tenantctl reconcile --repair` drops it once inactive)"
                        .into()
                },
                repaired,
            });
        }
        Ok(())
    }

    /// The server's spares against the warm pool's records: spares are neither tenants nor
    /// orphans, but each must be recorded and closed. Reported only (a refill round drops
    /// spares it does not want).
    async fn spares(
        &self,
        server_id: &ServerId,
        admin: &crate::pgadmin::ServerAdmin,
        findings: &mut Vec<Finding>,
    ) -> Result<(), ControlError> {
        // Any record covers a database (one being cloned too); only a ready, unclaimed spare is
        // expected on the server.
        let records = self.store.spares(server_id).await?;
        let recorded: HashSet<String> = records.iter().map(|s| s.db_name.to_string()).collect();
        let expected: Vec<String> = records
            .iter()
            .filter(|s| s.ready && s.claimed_by.is_none())
            .map(|s| s.db_name.to_string())
            .collect();
        let mut finding = |kind, name: &str, detail: &str| {
            findings.push(Finding {
                kind,
                server_id: Some(server_id.clone()),
                org_id: None,
                name: name.to_owned(),
                detail: detail.to_owned(),
                repaired: false,
            });
        };
        let present = admin.spare_databases().await?;
        for (name, allows_connections, public_connect) in &present {
            if allows_connections | public_connect {
                finding(
                    FindingKind::SpareNotLockedDown,
                    name,
                    "spare database allows connections or PUBLIC may connect; a tenant role \
                     could reach it",
                );
            }
            if !recorded.contains(name) {
                finding(
                    FindingKind::UntrackedSpare,
                    name,
                    "spare database the warm pool does not record (left by a crash while \
                     cloning?); drop it by hand",
                );
            }
        }
        for name in expected {
            if !present.iter().any(|(n, _, _)| *n == name) {
                finding(
                    FindingKind::UntrackedSpare,
                    &name,
                    "the warm pool records a spare that is not on the server; the next refill \
                     replaces it",
                );
            }
        }
        Ok(())
    }
}

fn sessions(inventory: &Inventory, tenant: &Tenant) -> i64 {
    inventory
        .sessions
        .get(&(tenant.db_name.to_string(), tenant.role_name().to_string()))
        .copied()
        .unwrap_or(0)
}
