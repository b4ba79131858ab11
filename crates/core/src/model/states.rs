//! The closed sets of the vocabulary: tenant, server, operation and move states, and the steps
//! each operation kind runs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::OrgId;

/// A string that names no variant of a closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}, expected one of: {expected}")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Closed sets stored as text in the registry and sent as snake_case strings in the API.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, UnknownVariant> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: s.chars().take(64).collect(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownVariant;
            fn try_from(value: String) -> Result<Self, UnknownVariant> {
                value.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where a tenant is in its lifecycle (DESIGN.md §4).
    TenantStatus, "status" {
        Provisioning => "provisioning",
        Active => "active",
        Suspended => "suspended",
        Failed => "failed",
        Deleting => "deleting",
        Deleted => "deleted",
    }
);

string_enum!(
    /// Where a tenant sits in the hierarchy: platform -> agency -> client. A client names its
    /// agency in `parent_org_id`; standalone tenants and agencies have no parent.
    TenantKind, "kind" {
        Standalone => "standalone",
        Agency => "agency",
        Client => "client",
    }
);

string_enum!(
    /// Who suspended a tenant, which decides who may resume it: a platform admin lifts any
    /// suspension; ZITADEL's reactivation lifts only its deactivation's; an agency's admin lifts
    /// only what the agency suspended; an agency's resumption lifts only what its suspension
    /// cascaded to.
    SuspendedBy, "suspended_by" {
        Platform => "platform",
        Zitadel => "zitadel",
        Agency => "agency",
        AgencyCascade => "agency_cascade",
    }
);

impl SuspendedBy {
    /// Whether `self`, resuming, may lift a suspension made by `suspender`.
    pub fn may_lift(self, suspender: SuspendedBy) -> bool {
        self == SuspendedBy::Platform || self == suspender
    }

    /// The tenant's `status_reason` while it is suspended so.
    pub fn reason(self) -> &'static str {
        match self {
            SuspendedBy::Platform => "suspended by a platform admin",
            SuspendedBy::Zitadel => "organization deactivated in ZITADEL",
            SuspendedBy::Agency => "suspended by its agency",
            SuspendedBy::AgencyCascade => "agency suspended",
        }
    }
}

/// Where a tenant sits in the hierarchy: its kind and, for a client, its agency and the
/// agency's status (a client is not acted in for a suspended agency).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPlace {
    pub kind: TenantKind,
    pub parent_org_id: Option<OrgId>,
    pub agency_status: Option<TenantStatus>,
}

impl TenantKind {
    /// The kind of a tenant that says none.
    pub fn standalone() -> Self {
        TenantKind::Standalone
    }

    /// The kind with its indefinite article, for messages: "an agency", "a client".
    pub fn with_article(self) -> &'static str {
        match self {
            TenantKind::Standalone => "a standalone",
            TenantKind::Agency => "an agency",
            TenantKind::Client => "a client",
        }
    }
}

string_enum!(
    /// How a provisioning got its database.
    ProvisionPath, "provision path" {
        Warm => "warm",
        Cold => "cold",
    }
);

string_enum!(
    /// Whether a database server takes new tenants.
    ServerState, "server state" {
        Active => "active",
        Draining => "draining",
        Disabled => "disabled",
    }
);

string_enum!(
    /// What an operation does. `activate_admin` invites the organization's first admin in
    /// ZITADEL and grants `tenant_admin`; it is queued when a tenant with an `admin_email`
    /// becomes active, and runs beside the tenant's other operations. `rotate_credentials` gives
    /// the tenant's role a new password (a new generation, under the current master key).
    /// `converge` brings the server back to what the registry says of the tenant (queued by the
    /// reconciler).
    OperationKind, "operation kind" {
        Provision => "provision",
        Suspend => "suspend",
        Resume => "resume",
        Retier => "retier",
        Deprovision => "deprovision",
        Purge => "purge",
        ActivateAdmin => "activate_admin",
        RotateCredentials => "rotate_credentials",
        Converge => "converge",
        Move => "move",
        Backup => "backup",
        Restore => "restore",
        RestoreCopy => "restore_copy",
    }
);

string_enum!(
    /// Why a backup was taken: by its tier's schedule, asked for, as the safeguard of a
    /// restore in place or of a deletion, or (`point_in_time`) dumped from a recovery of the
    /// server's WAL archive by a point-in-time restore.
    BackupKind, "backup kind" {
        Scheduled => "scheduled",
        Manual => "manual",
        PreRestore => "pre_restore",
        PreDelete => "pre_delete",
        PointInTime => "point_in_time",
    }
);

string_enum!(
    /// A backup is `running` until it is stored and checked readable (`completed`), or gave up
    /// (`failed`).
    BackupState, "backup state" {
        Running => "running",
        Completed => "completed",
        Failed => "failed",
    }
);

string_enum!(
    /// How a move copies a tenant's database: `online` (logical replication, then a short
    /// cutover) or `offline` (blocked for a dump and restore).
    MoveMode, "move mode" {
        Online => "online",
        Offline => "offline",
    }
);

string_enum!(
    OperationState, "operation state" {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
    }
);

string_enum!(
    /// One idempotent step of an operation. Each kind runs a fixed sequence of them
    /// ([`OperationKind::steps`]), then `done`.
    Step, "step" {
        Place => "place",
        Role => "role",
        ClaimSpare => "claim_spare",
        Database => "database",
        Lockdown => "lockdown",
        Verify => "verify",
        Activate => "activate",
        Block => "block",
        Unblock => "unblock",
        ApplyLimits => "apply_limits",
        DropDatabase => "drop_database",
        DropRole => "drop_role",
        InviteAdmin => "invite_admin",
        SetPassword => "set_password",
        Converge => "converge",
        CascadeClients => "cascade_clients",
        CheckMove => "check_move",
        TargetRole => "target_role",
        TargetDatabase => "target_database",
        Subscribe => "subscribe",
        CatchUp => "catch_up",
        Cutover => "cutover",
        Switch => "switch",
        RetireSource => "retire_source",
        Dump => "dump",
        CheckBackup => "check_backup",
        Safeguard => "safeguard",
        RestoreDatabase => "restore_database",
        Swap => "swap",
        RetireRestored => "retire_restored",
        ShredBackups => "shred_backups",
        TargetTenant => "target_tenant",
        Recover => "recover",
        Finish => "finish",
        Done => "done",
    }
);

/// Which operations of one tenant may run at the same time: one per lane. The identity lane
/// (inviting the first admin in ZITADEL) touches nothing on the database server, so it runs
/// beside the tenant's own operations. A backup only reads the database (through the admin's
/// connection), so suspending, resuming or re-tiering never waits for one; a restore and a
/// purge do (they refuse or wait while one is open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Tenant,
    Identity,
    Backup,
}

impl OperationKind {
    /// The steps this kind runs, in order; `done` follows the last. Each kind's file in the
    /// control plane's `operations` module runs them.
    pub fn steps(self) -> &'static [Step] {
        use Step::*;
        match self {
            OperationKind::Provision => &[Place, ClaimSpare, Role, Database, Lockdown, Activate],
            OperationKind::Suspend | OperationKind::Deprovision => &[Block, CascadeClients, Finish],
            OperationKind::Resume => &[Unblock, CascadeClients, Finish],
            OperationKind::Retier => &[ApplyLimits, Finish],
            OperationKind::Purge => &[DropDatabase, DropRole, ShredBackups, Finish],
            OperationKind::ActivateAdmin => &[InviteAdmin, Finish],
            OperationKind::RotateCredentials => &[SetPassword, Finish],
            OperationKind::Converge => &[Converge, Finish],
            OperationKind::Backup => &[Dump, CheckBackup, Finish],
            OperationKind::RestoreCopy => &[
                TargetTenant,
                Recover,
                RestoreDatabase,
                Verify,
                Swap,
                RetireRestored,
                Finish,
            ],
            OperationKind::Restore => &[
                Recover,
                Safeguard,
                RestoreDatabase,
                Verify,
                Swap,
                RetireRestored,
                Finish,
            ],
            OperationKind::Move => &[
                CheckMove,
                TargetRole,
                TargetDatabase,
                Subscribe,
                CatchUp,
                Cutover,
                Verify,
                Switch,
                RetireSource,
                Finish,
            ],
        }
    }

    /// Where a new operation of this kind starts.
    pub fn first_step(self) -> Step {
        self.steps()[0]
    }

    /// Where an operation starts whose tenant the request placed (on a server, with its spare
    /// claimed) in its own transaction: a provisioning then starts past `place` and
    /// `claim_spare`; any other kind where it always starts.
    pub fn first_step_placed(self) -> Step {
        match self {
            OperationKind::Provision => Step::Role,
            _ => self.first_step(),
        }
    }

    /// The step after `step`, or `done`.
    pub fn next_step(self, step: Step) -> Step {
        let steps = self.steps();
        match steps.iter().position(|s| *s == step) {
            Some(i) if i + 1 < steps.len() => steps[i + 1],
            _ => Step::Done,
        }
    }

    /// The lane this kind runs in: at most one queued or running operation per tenant and lane.
    pub fn lane(self) -> Lane {
        match self {
            OperationKind::ActivateAdmin => Lane::Identity,
            // A copy into a new tenant reads only the source's backup.
            OperationKind::Backup | OperationKind::RestoreCopy => Lane::Backup,
            OperationKind::Provision
            | OperationKind::Suspend
            | OperationKind::Resume
            | OperationKind::Retier
            | OperationKind::Deprovision
            | OperationKind::Purge
            | OperationKind::RotateCredentials
            | OperationKind::Converge
            | OperationKind::Move
            | OperationKind::Restore => Lane::Tenant,
        }
    }

    /// The kinds of `lane`, as the registry stores them (for queries that keep to one lane).
    pub fn in_lane(lane: Lane) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|kind| kind.lane() == lane)
            .map(|kind| kind.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_starts_somewhere_and_ends_done() {
        for kind in OperationKind::ALL {
            let steps = kind.steps();
            assert!(!steps.is_empty(), "{kind}");
            assert!(!steps.contains(&Step::Done), "{kind}");
            assert_eq!(kind.next_step(*steps.last().unwrap()), Step::Done);
        }
        assert_eq!(
            OperationKind::Provision.next_step(Step::Place),
            Step::ClaimSpare
        );
        assert_eq!(
            OperationKind::Provision.next_step(Step::Lockdown),
            Step::Activate
        );
    }

    #[test]
    fn only_the_admin_invitation_runs_beside_a_tenant_operation() {
        assert_eq!(OperationKind::in_lane(Lane::Identity), ["activate_admin"]);
    }
}
