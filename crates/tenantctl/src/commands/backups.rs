//! `tenantctl backups`: take, list, download, restore and verify tenant backups.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use tenancy_core::{Backup, BackupKind, OperationState, OrgId, RestoreSource};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::output::{self, confirm, opt};
use crate::{Context, Exit};

#[derive(Subcommand)]
#[command(after_help = "\
Examples:
  tenantctl backups create 263014839178313731
  tenantctl backups list 263014839178313731
  tenantctl backups download 263014839178313731 0193a1c2-... --out acme.dump
  tenantctl backups restore 263014839178313731 0193a1c2-... --yes
  tenantctl backups verify --sample 5")]
pub enum Command {
    /// Back a tenant up now and wait until the backup is stored and checked.
    Create {
        org_id: OrgId,
        /// How long to wait.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
        wait: Duration,
    },
    /// A tenant's backups, newest first.
    List {
        org_id: OrgId,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Write a backup as a plain pg_dump archive (for pg_restore), decrypted.
    Download {
        org_id: OrgId,
        backup_id: Uuid,
        /// Where to write it; `-` for standard output.
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a tenant in place from one of its backups (a pre_restore backup is taken
    /// first; the replaced database is kept for the retention period), or copy the backup into
    /// a new tenant with --into and --name.
    Restore {
        org_id: OrgId,
        backup_id: Uuid,
        #[command(flatten)]
        how: RestoreOptions,
    },
    /// Restore backups into scratch databases and compare their row counts with the catalog;
    /// the newest backup of each tenant chosen (or of the tenants given).
    Verify {
        /// Only these tenants' newest backups.
        #[arg(long = "org")]
        orgs: Vec<OrgId>,
        /// Verify this many, chosen at random, instead of all.
        #[arg(long)]
        sample: Option<usize>,
    },
}

/// Where a restore goes and how long it is waited for (`backups restore`, `tenants restore`).
#[derive(clap::Args)]
pub(crate) struct RestoreOptions {
    /// Copy into this new organization's tenant instead of restoring in place.
    #[arg(long, requires = "name")]
    into: Option<OrgId>,
    /// The new tenant's name (with --into).
    #[arg(long, requires = "into")]
    name: Option<tenancy_core::TenantName>,
    /// Do not ask first.
    #[arg(long)]
    yes: bool,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    wait: Duration,
}

/// Restores `org_id` from `source` in place (after asking), or copies it into a new tenant
/// (`--into`); waits for the end.
pub(crate) async fn restore(
    cx: &Context,
    org_id: &OrgId,
    source: RestoreSource,
    how: RestoreOptions,
) -> Result<Exit> {
    let RestoreOptions {
        into,
        name,
        yes,
        wait,
    } = how;
    let engine = cx.engine().await?;
    let op = match into.zip(name) {
        Some((into, name)) => {
            let copy = engine
                .request_restore_copy(org_id, source, &into, name, &cx.actor)
                .await?;
            // The copy waits for the new tenant's provisioning: run it here too when no
            // registry worker has it.
            for op in engine.tenant_operations(&into, 10).await? {
                if op.kind == tenancy_core::OperationKind::Provision
                    && !matches!(op.state, OperationState::Succeeded | OperationState::Failed)
                {
                    engine.drive_operation(op.id, wait).await?;
                }
            }
            copy
        }
        None => {
            let what = match source {
                RestoreSource::Backup(id) => format!("backup {id}"),
                RestoreSource::Moment(at) => format!("its data as of {}", at.to_rfc3339()),
            };
            confirm(
                yes,
                &format!(
                    "replace tenant {org_id}'s database with {what}? Its sessions end for the swap."
                ),
            )?;
            engine.request_restore(org_id, source, &cx.actor).await?
        }
    };
    let op = engine.drive_operation(op.id, wait).await?;
    output::operations(std::slice::from_ref(&op));
    Ok(Exit::problems_if(op.state != OperationState::Succeeded))
}

pub async fn run(command: Command, cx: &Context) -> Result<Exit> {
    let engine = cx.engine().await?;
    match command {
        Command::Create { org_id, wait } => {
            let op = engine
                .request_backup(&org_id, BackupKind::Manual, &cx.actor)
                .await?;
            let op = engine.drive_operation(op.id, wait).await?;
            if op.state != OperationState::Succeeded {
                output::operations(std::slice::from_ref(&op));
                return Ok(Exit::Problems);
            }
            let backup = engine
                .backups(&org_id, None, 20)
                .await?
                .into_iter()
                .find(|b| b.operation_id == op.id)
                .context("the backup is not in the catalog")?;
            show(&[backup], cx.json)?;
            Ok(Exit::Done)
        }
        Command::List { org_id, limit } => {
            show(&engine.backups(&org_id, None, limit).await?, cx.json)?;
            Ok(Exit::Done)
        }
        Command::Download {
            org_id,
            backup_id,
            out,
        } => download(&engine, cx, &org_id, backup_id, &out).await,
        Command::Restore {
            org_id,
            backup_id,
            how,
        } => restore(cx, &org_id, RestoreSource::Backup(backup_id), how).await,
        Command::Verify { orgs, sample } => {
            let mut backups = engine.latest_backups(&orgs).await?;
            if let Some(n) = sample {
                backups.shuffle(&mut rand::rng());
                backups.truncate(n);
            }
            let mut damaged = 0;
            for backup in &backups {
                let (ok, found) = engine.verify_backup(&backup.org_id, backup.id).await?;
                damaged += usize::from(!ok);
                let line = serde_json::json!({
                    "org_id": backup.org_id, "backup_id": backup.id, "ok": ok, "found": found,
                });
                if cx.json {
                    println!("{line}");
                } else {
                    println!(
                        "{} {} {}: {found}",
                        if ok { "ok     " } else { "DAMAGED" },
                        backup.org_id,
                        backup.id
                    );
                }
            }
            if !cx.json {
                println!("{} verified, {damaged} damaged", backups.len());
            }
            Ok(Exit::problems_if(damaged > 0))
        }
    }
}

async fn download(
    engine: &tenancy_control::Engine,
    cx: &Context,
    org_id: &OrgId,
    backup_id: Uuid,
    out: &PathBuf,
) -> Result<Exit> {
    let mut export = engine.export_backup(org_id, backup_id, &cx.actor).await?;
    let to_stdout = out.as_os_str() == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        bail!("refusing to write an archive to a terminal: give --out FILE or pipe it");
    }
    let size = export.backup.size_bytes.unwrap_or(0) as u64;
    let bar = (std::io::stderr().is_terminal() && !cx.json).then(|| {
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template"),
        );
        bar
    });
    let mut writer: Box<dyn tokio::io::AsyncWrite + Unpin> = if to_stdout {
        Box::new(tokio::io::stdout())
    } else {
        Box::new(
            tokio::fs::File::create(out)
                .await
                .with_context(|| format!("creating {}", out.display()))?,
        )
    };
    let mut buffer = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        use tokio::io::AsyncReadExt;
        let n = export
            .reader
            .read(&mut buffer)
            .await
            .context("reading the backup (it does not authenticate: it was changed or cut)")?;
        if n == 0 {
            break;
        }
        writer.write_all(&buffer[..n]).await?;
        written += n as u64;
        if let Some(bar) = &bar {
            bar.set_position(written);
        }
    }
    writer.flush().await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !to_stdout {
        let line = serde_json::json!({
            "org_id": org_id, "backup_id": backup_id, "bytes": written, "out": out,
        });
        if cx.json {
            println!("{line}");
        } else {
            println!("{written} bytes written to {}", out.display());
        }
    }
    Ok(Exit::Done)
}

fn show(backups: &[Backup], json: bool) -> Result<()> {
    if json {
        return output::json(&backups);
    }
    let lines = backups.iter().map(|b| {
        [
            b.id.to_string(),
            output::label(&b.kind),
            output::label(&b.state),
            opt(b.size_bytes.map(|n| bytesize::ByteSize::b(n as u64))),
            opt(b.stored_bytes.map(|n| bytesize::ByteSize::b(n as u64))),
            b.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            opt(b.verified_ok.map(|ok| if ok { "whole" } else { "DAMAGED" })),
        ]
    });
    println!(
        "{}",
        output::table(
            [
                "ID", "KIND", "STATE", "SIZE", "STORED", "CREATED", "VERIFIED"
            ],
            lines
        )
    );
    Ok(())
}
