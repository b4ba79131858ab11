//! `tenantctl tenants`: tenant administration.

use std::time::Duration;

use anyhow::Result;
use tenancy_control::{Cascade, Engine, Onboarded, TenantFilter};
use tenancy_core::{
    CreateTenant, MoveMode, Operation, OperationState, OrgId, Region, ServerId, Slug, SuspendedBy,
    TenantKind, TenantName, TenantSelector, Tier,
};

use crate::output::{self, confirm};
use crate::{Context, Exit};

/// How long suspend, resume and delete wait for their operation by default.
const DEFAULT_WAIT: &str = "60s";

/// Tenant administration.
#[derive(clap::Subcommand)]
#[command(after_help = "Example:\n  tenantctl tenants list")]
pub enum Command {
    /// List tenants.
    #[command(after_help = "Examples:
  tenantctl tenants list --status suspended --output json
  tenantctl tenants list --tree                  # agencies with their clients beneath them
  tenantctl tenants list --agency 263014839178313730
  tenantctl tenants list --search acme             # name contains it, or org id / database is it")]
    List {
        #[command(flatten)]
        select: super::select::Select,
        /// Tenants whose organization id or database name is this text, or whose name contains
        /// it (ignoring case).
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        search: Option<String>,
        /// Print agencies with their clients beneath them.
        #[arg(long)]
        tree: bool,
    },
    /// One tenant and its recent operations.
    #[command(after_help = "Example:\n  tenantctl tenants show 263014839178313731")]
    Show { org_id: OrgId },
    /// Bring a tenant's database back as it was at a moment, from its server's WAL archive
    /// (see `tenants restore-window`): in place (a pre_restore backup is taken first), or into
    /// a new tenant with --into and --name.
    #[command(after_help = "Examples:
  tenantctl tenants restore 263014839178313731 --at 2026-12-07T10:42:00Z --yes
  tenantctl tenants restore 263014839178313731 --at 2026-12-07T10:42:00Z \\
    --into 263014839178313799 --name 'Acme (as of 10:42)'")]
    Restore {
        org_id: OrgId,
        /// The moment (RFC 3339): transactions committed at or before it are kept.
        #[arg(long)]
        at: chrono::DateTime<chrono::Utc>,
        #[command(flatten)]
        how: super::backups::RestoreOptions,
    },
    /// The moments a point-in-time restore of a tenant reaches now.
    #[command(after_help = "Example:\n  tenantctl tenants restore-window 263014839178313731")]
    RestoreWindow { org_id: OrgId },
    /// Onboard an organization.
    #[command(after_help = "Examples:
  tenantctl tenants create 263014839178313731 'Acme Corp' --tier professional --wait 60s
  tenantctl tenants create 263014839178313730 'Northwind MSP' --kind agency --tier msp
  tenantctl tenants create 263014839178313732 'Contoso' --agency 263014839178313730

With --wait, the provisioning runs in this process when no registry worker has it, so it \
completes with no registry running; no other operation is ever taken.")]
    Create {
        org_id: OrgId,
        name: TenantName,
        #[arg(long)]
        slug: Option<Slug>,
        #[arg(long)]
        region: Option<Region>,
        #[arg(long)]
        tier: Option<Tier>,
        /// `agency` for a tenant that will have clients (a client is made with --agency).
        #[arg(long)]
        kind: Option<TenantKind>,
        /// Make the tenant a client of this agency (an active agency tenant).
        #[arg(long)]
        agency: Option<OrgId>,
        /// Wait this long for the tenant to be active (`30s`, `2m`).
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
    },
    /// Move the tenant's database to another server (or back, with --undo).
    #[command(after_help = "Examples:
  tenantctl tenants move 263014839178313731 --to pg-eu-2 --wait --yes
  tenantctl tenants move 263014839178313731 --mode offline --yes   # placement chooses; queued
  tenantctl tenants move 263014839178313731 --undo --wait --yes    # back where it came from
  tenantctl tenants move 263014839178313731 --cancel --wait --yes  # stop it before its switch

online (the default when the source server has wal_level = logical and every table has a primary \
key or replica identity): the rows are copied by logical replication while the tenant keeps \
working, then a cutover of well under two seconds blocks it, lets the target catch up, copies \
sequences and switches. offline: the tenant is blocked while pg_dump streams into pg_restore. \
Both verify every table's rows and checksum before the switch; a mismatch leaves the tenant on \
its source. Routers follow the switch through the change feed. The source copy is kept, renamed \
and closed, for the retention period: --undo within it moves the tenant back (a fresh copy of \
its current data). --cancel stops a move before its switch: it is abandoned at its next step \
(within about a second while it waits for the target), and the tenant stays on its source.
Exit status is 1 when the move failed (or, with --cancel, when it could not be cancelled).")]
    Move {
        org_id: OrgId,
        /// The server to move to (active, same region, with room); placement chooses when unset.
        #[arg(long, conflicts_with = "undo")]
        to: Option<ServerId>,
        /// `online` or `offline`; online when possible when unset.
        #[arg(long, conflicts_with = "undo")]
        mode: Option<MoveMode>,
        /// Move back to where the last move came from (within its retention).
        #[arg(long, conflicts_with = "cancel")]
        undo: bool,
        /// Cancel the move under way (before its switch).
        #[arg(long, conflicts_with_all = ["to", "mode"])]
        cancel: bool,
        #[arg(long)]
        yes: bool,
        /// Wait for the move to finish, running it here when no registry worker has it (30m,
        /// or this long); without it the move is queued for the registry's workers.
        #[arg(long, value_parser = humantime::parse_duration, num_args = 0..=1, default_missing_value = "30m")]
        wait: Option<Duration>,
    },
    /// Suspend: the tenant can no longer connect, open sessions end.
    #[command(after_help = "Example:\n  tenantctl tenants suspend 263014839178313731 --yes")]
    Suspend {
        org_id: OrgId,
        #[arg(long)]
        yes: bool,
        /// How long to wait for the suspension to be applied.
        #[arg(long, value_parser = humantime::parse_duration, default_value = DEFAULT_WAIT)]
        wait: Duration,
    },
    /// Resume a suspended tenant.
    #[command(after_help = "Example:\n  tenantctl tenants resume 263014839178313731")]
    Resume {
        org_id: OrgId,
        /// How long to wait for the resume to be applied.
        #[arg(long, value_parser = humantime::parse_duration, default_value = DEFAULT_WAIT)]
        wait: Duration,
    },
    /// Give the tenant's role a new password; routers pick it up through the change feed.
    #[command(after_help = "Example:
  tenantctl tenants rotate 263014839178313731

The role's password is derived from the master key, the org_id, a nonce and a generation;
rotating bumps the generation. Routers fetch the new password when the change feed reports the
rotation; a borrow that meets the old password in between is retried once.")]
    Rotate {
        org_id: OrgId,
        /// How long to wait for the rotation to be applied.
        #[arg(long, value_parser = humantime::parse_duration, default_value = DEFAULT_WAIT)]
        wait: Duration,
    },
    /// Delete (kept for the retention period), or with --purge drop a deleted tenant's database now.
    #[command(after_help = "Examples:
  tenantctl tenants delete 263014839178313731
  tenantctl tenants delete 263014839178313731 --purge --yes
  tenantctl tenants delete 263014839178313730 --cascade --yes   # an agency and its clients")]
    Delete {
        org_id: OrgId,
        #[arg(long)]
        purge: bool,
        /// For an agency: delete its live clients with it (without it, an agency with live
        /// clients is refused).
        #[arg(long, conflicts_with = "purge")]
        cascade: bool,
        #[arg(long)]
        yes: bool,
        /// How long to wait for the deletion to be applied.
        #[arg(long, value_parser = humantime::parse_duration, default_value = DEFAULT_WAIT)]
        wait: Duration,
    },
}

pub async fn run(command: Command, cx: &Context) -> Result<Exit> {
    match command {
        Command::List {
            select,
            search,
            tree,
        } => {
            let filter = TenantFilter {
                search,
                ..TenantFilter::from(TenantSelector::from(select))
            };
            let tenants = cx.engine().await?.all_tenants(&filter).await?;
            if tree {
                output::tenant_tree(&tenants, cx.json)?;
            } else {
                output::tenants(&tenants, cx.json)?;
            }
            Ok(Exit::Done)
        }
        Command::Restore { org_id, at, how } => {
            let source = tenancy_core::RestoreSource::Moment(at);
            super::backups::restore(cx, &org_id, source, how).await
        }
        Command::RestoreWindow { org_id } => {
            let window = cx.engine().await?.restore_window(&org_id).await?;
            if cx.json {
                output::json(&window)?;
            } else {
                println!(
                    "tenant {org_id} on {}: earliest {}, latest {}",
                    output::opt(window.server_id.as_ref()),
                    output::opt(window.earliest.map(|t| t.to_rfc3339())),
                    output::opt(window.latest.map(|t| t.to_rfc3339())),
                );
            }
            Ok(Exit::Done)
        }
        Command::Show { org_id } => {
            let engine = cx.engine().await?;
            let tenant = engine.tenant(&org_id).await?;
            let ops = engine.tenant_operations(&org_id, 10).await?;
            if cx.json {
                output::json(&serde_json::json!({"tenant": tenant, "operations": ops}))?;
            } else {
                output::tenants(std::slice::from_ref(&tenant), false)?;
                output::operations(&ops);
            }
            Ok(Exit::Done)
        }
        Command::Create {
            org_id,
            name,
            slug,
            region,
            tier,
            kind,
            agency,
            wait,
        } => {
            let engine = cx.engine().await?;
            let request = CreateTenant {
                slug,
                region,
                tier,
                kind,
                parent_org_id: agency,
                ..CreateTenant::new(org_id, name)
            };
            match engine.onboard(request, &cx.actor).await? {
                Onboarded::Existing { tenant } => {
                    output::tenants(&[tenant], cx.json)?;
                    Ok(Exit::Done)
                }
                Onboarded::Created { tenant, operation } => {
                    let op = match wait {
                        Some(wait) => engine.drive_operation(operation.id, wait).await?,
                        None => operation,
                    };
                    output::operations(std::slice::from_ref(&op));
                    output::tenants(&[engine.tenant(&tenant.org_id).await?], cx.json)?;
                    Ok(Exit::problems_if(op.state == OperationState::Failed))
                }
            }
        }
        Command::Move {
            org_id,
            to,
            mode,
            undo,
            cancel,
            yes,
            wait,
        } => {
            let what = if cancel {
                super::moves::MoveAction::Cancel
            } else if undo {
                super::moves::MoveAction::Undo
            } else {
                super::moves::MoveAction::Move { to, mode }
            };
            super::moves::move_one(org_id, what, (yes, wait), cx).await
        }
        Command::Suspend { org_id, yes, wait } => {
            confirm(
                yes,
                &format!("suspend tenant {org_id}? Its sessions will be ended."),
            )?;
            let engine = cx.engine().await?;
            let op = engine
                .suspend(&org_id, SuspendedBy::Platform, &cx.actor)
                .await?;
            finish_with_cascades(&engine, op, wait).await
        }
        Command::Resume { org_id, wait } => {
            let engine = cx.engine().await?;
            let op = engine
                .resume(&org_id, SuspendedBy::Platform, &cx.actor)
                .await?;
            finish_with_cascades(&engine, op, wait).await
        }
        Command::Rotate { org_id, wait } => {
            let engine = cx.engine().await?;
            let op = engine.rotate_credentials(&org_id, &cx.actor).await?;
            finish(&engine, op, wait).await
        }
        Command::Delete {
            org_id,
            purge,
            cascade,
            yes,
            wait,
        } => {
            let question = if purge {
                format!("drop tenant {org_id}'s database and role now? This cannot be undone.")
            } else if cascade {
                format!(
                    "delete tenant {org_id} and every live client of it? They are refused at once; their databases are kept for the retention period."
                )
            } else {
                format!(
                    "delete tenant {org_id}? It is refused at once; its database is kept for the retention period."
                )
            };
            confirm(yes, &question)?;
            let engine = cx.engine().await?;
            let op = if purge {
                engine.purge(&org_id, &cx.actor).await?
            } else {
                let cascade = if cascade {
                    Cascade::WithClients
                } else {
                    Cascade::Refuse
                };
                engine.delete(&org_id, cascade, &cx.actor).await?
            };
            finish_with_cascades(&engine, op, wait).await
        }
    }
}

/// As [`finish`], then the same for each operation it queued for an agency's clients: they are
/// this command's work too.
async fn finish_with_cascades(engine: &Engine, op: Operation, wait: Duration) -> Result<Exit> {
    let mut exit = finish(engine, op.clone(), wait).await?;
    for cascaded in engine.operations_with_cascades(&op.org_id, 1000).await? {
        if cascaded.parent_operation_id == Some(op.id)
            && finish(engine, cascaded, wait).await? == Exit::Problems
        {
            exit = Exit::Problems;
        }
    }
    Ok(exit)
}

/// Waits for the command's own operation (running it here when no worker has it).
async fn finish(engine: &Engine, op: Operation, wait: Duration) -> Result<Exit> {
    let op = engine.drive_operation(op.id, wait).await?;
    output::operations(std::slice::from_ref(&op));
    Ok(Exit::problems_if(op.state != OperationState::Succeeded))
}
