//! Moving tenants between servers from the command line: `tenants move`, `servers drain
//! --move` and `rebalance` all end here, running their moves with bounded concurrency and a
//! progress bar (each move runs in this process when no registry worker has it, so it finishes
//! with no registry running).

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tenancy_control::{Balance, Engine, PlannedMove};
use tenancy_core::{MoveMode, MoveTenant, OperationState, OrgId, Region, TenantMove};

use crate::output::{self, confirm, opt, table};
use crate::{Context, Exit};

/// Evens out the active servers of a region by moving tenants from the fullest to the
/// emptiest.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  tenantctl rebalance --region eu-west --dry-run     # the moves it would make
  tenantctl rebalance --region eu-west --yes         # make them, 2 at a time
  tenantctl rebalance --by size --spread 0.2 --yes   # by database size, within 20% of the mean

Moves go from the fullest server to the emptiest until every active server of the region is \
within --spread of the mean (by tenant count: as even as whole tenants allow). Draining and disabled \
servers are left out. Each move is online when the source server allows it, else offline (see \
`tenantctl tenants move --help`). Run it again to resume: moves under way are picked up.
Exit status is 1 when a move failed.")]
pub struct RebalanceArgs {
    /// The region; the configuration's default region when unset.
    #[arg(long)]
    region: Option<Region>,
    /// What to even out.
    #[arg(long, value_enum, default_value = "tenants")]
    by: By,
    /// How far from the mean a server may stay, as a fraction of the mean.
    #[arg(long, default_value = "0.1")]
    spread: f64,
    /// Show the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Moves at once.
    #[arg(long, default_value = "2")]
    concurrency: usize,
    #[arg(long)]
    yes: bool,
    /// How long to wait for each move.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    wait: Duration,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum By {
    /// Tenants per server.
    Tenants,
    /// Bytes of tenant databases per server.
    Size,
}

pub async fn rebalance(args: RebalanceArgs, cx: &Context) -> Result<Exit> {
    let engine = cx.engine().await?;
    let region = match args.region {
        Some(region) => region,
        None => engine
            .config()
            .default_region()
            .ok_or_else(|| anyhow::anyhow!("no --region and no default region configured"))?,
    };
    let by = match args.by {
        By::Tenants => Balance::Tenants,
        By::Size => Balance::Size,
    };
    let plan = engine.rebalance_plan(&region, by, args.spread).await?;
    show_plan(&plan, cx)?;
    if plan.is_empty() {
        eprintln!("region {region} is balanced: nothing to move");
        return Ok(Exit::Done);
    }
    if args.dry_run {
        return Ok(Exit::Done);
    }
    confirm(args.yes, &format!("make these {} move(s)?", plan.len()))?;
    run_moves(&engine, plan, args.concurrency, args.wait, cx).await
}

/// Prints a drain's or a rebalance's moves.
pub fn show_plan(plan: &[PlannedMove], cx: &Context) -> Result<()> {
    if cx.json {
        return output::json(&plan);
    }
    let lines = plan.iter().map(|m| {
        [
            m.org_id.to_string(),
            m.from.to_string(),
            m.to.as_ref()
                .map_or_else(|| "(placement)".to_owned(), ToString::to_string),
            opt(m
                .bytes
                .map(|b| bytesize::ByteSize::b(b.max(0) as u64).to_string())),
        ]
    });
    println!("{}", table(["org_id", "from", "to", "size"], lines));
    Ok(())
}

/// Runs moves, `concurrency` at a time, each asked for and then driven to its end; prints a
/// summary. A move the tenant has under way already is picked up, not asked for twice.
pub async fn run_moves(
    engine: &Engine,
    plan: Vec<PlannedMove>,
    concurrency: usize,
    wait: Duration,
    cx: &Context,
) -> Result<Exit> {
    let bar = (!cx.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(plan.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} moved {msg}",
            )
            .expect("valid template"),
        );
        bar
    });
    let results: Vec<(OrgId, Result<Option<TenantMove>, String>)> = futures::stream::iter(plan)
        .map(|planned| {
            let bar = bar.clone();
            async move {
                let request = MoveTenant {
                    server_id: planned.to.clone(),
                    mode: None,
                };
                let result = one_move(engine, &planned.org_id, &request, wait, cx).await;
                if let Some(bar) = &bar {
                    bar.set_message(planned.org_id.to_string());
                    bar.inc(1);
                }
                (planned.org_id, result)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let moved: Vec<&TenantMove> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok()?.as_ref())
        .collect();
    let failed: Vec<(&OrgId, &String)> = results
        .iter()
        .filter_map(|(org, r)| r.as_ref().err().map(|e| (org, e)))
        .collect();
    if cx.json {
        output::json(&serde_json::json!({
            "moved": moved,
            "failed": failed.iter().map(|(org, e)| serde_json::json!({"org_id": org, "error": e})).collect::<Vec<_>>(),
        }))?;
    } else {
        show_moves(&moved);
        for (org, error) in &failed {
            eprintln!("tenant {org}: {error}");
        }
        println!("{} moved, {} failed", moved.len(), failed.len());
    }
    Ok(Exit::problems_if(!failed.is_empty()))
}

/// Asks for one move and drives it to its end; the move's record once it succeeded.
async fn one_move(
    engine: &Engine,
    org_id: &OrgId,
    request: &MoveTenant,
    wait: Duration,
    cx: &Context,
) -> Result<Option<TenantMove>, String> {
    let op = engine
        .move_tenant(org_id, request, &cx.actor)
        .await
        .map_err(|e| e.to_string())?;
    let op = engine
        .drive_operation(op.id, wait)
        .await
        .map_err(|e| e.to_string())?;
    match op.state {
        OperationState::Succeeded => Ok(engine
            .tenant_moves(org_id, 1)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()),
        OperationState::Failed => Err(op.last_error.unwrap_or_else(|| "failed".into())),
        _ => Err(format!(
            "still {} at step {} after {wait:?}",
            op.state, op.step
        )),
    }
}

/// Prints moves: where, how, and what they measured.
pub fn show_moves(moves: &[&TenantMove]) {
    let lines = moves.iter().map(|m| {
        [
            m.org_id.to_string(),
            format!("{} -> {}", m.source_server_id, m.target_server_id),
            m.mode.to_string(),
            opt(m
                .bytes_copied
                .map(|b| bytesize::ByteSize::b(b.max(0) as u64).to_string())),
            opt(m.downtime_ms.map(|ms| format!("{ms} ms"))),
            m.aborted
                .clone()
                .unwrap_or_else(|| opt(m.verification.as_ref())),
        ]
    });
    println!(
        "{}",
        table(
            [
                "org_id",
                "move",
                "mode",
                "copied",
                "downtime",
                "verification"
            ],
            lines
        )
    );
}

/// `tenants move`: one tenant, to a server or where placement says; or back (`--undo`).
/// What `tenants move` does.
pub enum MoveAction {
    Move {
        to: Option<tenancy_core::ServerId>,
        mode: Option<MoveMode>,
    },
    Undo,
    Cancel,
}

pub async fn move_one(
    org_id: OrgId,
    what: MoveAction,
    (yes, wait): (bool, Option<Duration>),
    cx: &Context,
) -> Result<Exit> {
    let question = match &what {
        MoveAction::Undo => {
            format!("move tenant {org_id} back to the server its last move took it from?")
        }
        MoveAction::Cancel => format!(
            "cancel tenant {org_id}'s move? It stays on its source; the target's copy is dropped."
        ),
        MoveAction::Move { to, .. } => format!(
            "move tenant {org_id} to {}? It cannot write during the cutover.",
            to.as_ref().map_or_else(
                || "the server placement chooses".to_owned(),
                ToString::to_string
            )
        ),
    };
    confirm(yes, &question)?;
    let engine = cx.engine().await?;
    let cancelling = matches!(what, MoveAction::Cancel);
    let op = match what {
        MoveAction::Undo => engine.undo_move(&org_id, &cx.actor).await?,
        MoveAction::Cancel => engine.cancel_move(&org_id, &cx.actor).await?,
        MoveAction::Move { to, mode } => {
            engine
                .move_tenant(
                    &org_id,
                    &MoveTenant {
                        server_id: to,
                        mode,
                    },
                    &cx.actor,
                )
                .await?
        }
    };
    let Some(wait) = wait else {
        output::operations(std::slice::from_ref(&op));
        eprintln!(
            "queued: a registry worker runs it (`tenantctl tenants show {org_id}` follows it)"
        );
        return Ok(Exit::Done);
    };
    let op = engine.drive_operation(op.id, wait).await?;
    output::operations(std::slice::from_ref(&op));
    if let Some(m) = engine.tenant_moves(&org_id, 1).await?.first() {
        if cx.json {
            output::json(m)?;
        } else {
            show_moves(&[m]);
        }
    }
    let ended_as_asked = if cancelling {
        op.state == OperationState::Failed
            && op.last_error_code == Some(tenancy_core::ErrorCode::Cancelled)
    } else {
        op.state == OperationState::Succeeded
    };
    Ok(Exit::problems_if(!ended_as_asked))
}
