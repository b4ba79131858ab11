//! `tenantctl reconcile`: compares the registry with the servers.

use anyhow::Result;

use crate::output::{confirm, label, opt, table};
use crate::{Context, Exit};

/// Compare the registry with the servers; --repair fixes what is safe to fix.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  tenantctl reconcile                 # report only
  tenantctl reconcile --repair --yes

Exit status is 1 when findings are left unrepaired.")]
pub struct Args {
    /// Repair what is safe to repair (never drops a database).
    #[arg(long)]
    repair: bool,
    /// Do not ask before repairing.
    #[arg(long)]
    yes: bool,
}

pub async fn run(args: Args, cx: &Context) -> Result<Exit> {
    if args.repair {
        confirm(
            args.yes,
            "repair drift? Missing roles are recreated, stuck tenants' operations queued, orphan roles dropped.",
        )?;
    }
    let findings = cx.engine().await?.reconcile(args.repair).await?;
    if cx.json {
        crate::output::json(&findings)?;
    } else if findings.is_empty() {
        println!("no drift");
    } else {
        let lines = findings.iter().map(|f| {
            [
                label(&f.kind),
                opt(f.server_id.as_ref()),
                f.name.clone(),
                f.repaired.to_string(),
                f.detail.clone(),
            ]
        });
        let header = ["kind", "server", "name", "repaired", "detail"];
        println!("{}", table(header, lines));
    }
    Ok(Exit::problems_if(findings.iter().any(|f| !f.repaired)))
}
