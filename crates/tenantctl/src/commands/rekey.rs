//! `tenantctl rekey`: moves every tenant's password and secret settings to the current master
//! key.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use tenancy_core::OperationState;

use crate::output::{self, confirm};
use crate::{Context, Exit};

/// Rotate every tenant whose password does not derive from the current master key yet, and
/// re-encrypt every secret setting sealed under another key.
#[derive(clap::Args)]
#[command(after_help = "Rotating the master key:
  1. Generate a new key (at least 32 bytes) and put it in the master key's variable on every
     registry replica and tool; put the old one in the variable named by
     engine.previous_master_key_env. Restart every replica.
  2. tenantctl rekey --yes        # every tenant's password and secret setting moves to the new key
  3. Run it again until it reports nothing left, then remove the previous key.

Active and suspended tenants get a credential rotation each; failed, provisioning, deleting and \
deleted ones move to the new key in the registry alone (their role is blocked or absent, and \
whatever makes it usable again sets its password). Tenants with an operation under way are left \
and reported: run rekey again later; the previous key must stay until none is left.
Exit status is 1 when a rotation failed or a tenant was left on the old key.")]
pub struct Args {
    /// Do not ask first.
    #[arg(long)]
    yes: bool,
    /// How long to wait for all the rotations.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    wait: Duration,
}

pub async fn run(args: Args, cx: &Context) -> Result<Exit> {
    confirm(
        args.yes,
        "rotate every tenant's password to the current master key? Routers pick the new passwords up through the change feed.",
    )?;
    let engine = cx.engine().await?;
    let rekeyed = engine.rekey(&cx.actor).await?;
    let (queued, left) = (rekeyed.queued, rekeyed.left);
    let resealed = engine.reseal_settings().await?;
    let backup_keys = engine.reseal_backup_keys().await?;
    let bar = (!cx.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(queued.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tenants",
            )
            .expect("valid template"),
        );
        bar
    });
    let deadline = tokio::time::Instant::now() + args.wait;
    let mut failed = Vec::new();
    for op in &queued {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let done = engine.drive_operation(op.id, left).await?;
        if done.state != OperationState::Succeeded {
            failed.push(done);
        }
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = serde_json::json!({
        "rotated": queued.len() - failed.len(),
        "failed": failed.iter().map(|op| op.org_id.to_string()).collect::<Vec<_>>(),
        "rekeyed_in_registry": rekeyed.in_registry.len(),
        "left": left.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "secret_settings_resealed": resealed,
        "backup_keys_resealed": backup_keys,
    });
    if cx.json {
        output::json(&summary)?;
    } else {
        output::operations(&failed);
        println!(
            "{} rotated, {} failed, {} moved in the registry alone (not active or suspended), \
             {} left on the old key (operation under way: run again later); \
             {resealed} secret settings and {backup_keys} backup keys re-encrypted",
            summary["rotated"],
            failed.len(),
            rekeyed.in_registry.len(),
            left.len()
        );
    }
    Ok(Exit::problems_if(!failed.is_empty() || !left.is_empty()))
}
