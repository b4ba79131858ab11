//! `tenantctl reconcile`: compares the registry with the servers.

use anyhow::Result;
use tenancy_control::Repair;

use crate::output::{confirm, label, opt, table};
use crate::{Context, Exit};

/// Compare every tenant with its server; --repair converges them and drops orphan roles.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  tenantctl reconcile                 # report only
  tenantctl reconcile --repair --yes

Checked per tenant: the database and role exist and are this tenant's (tagged with its org_id);
an active tenant can connect and a suspended or deleted one cannot; the role has no privileges,
memberships or password it should not. --repair queues a `converge` operation for each tenant
that differs, marks a tenant whose database is gone as failed (a database is never recreated
nor dropped), and drops `tenant_*` roles no tenant owns. The registry runs the same checks every
engine.reconcile_interval, without dropping orphan roles.

Exit status is 1 when findings are left unrepaired.")]
pub struct Args {
    /// Repair: converge tenants, mark tenants without a database failed, drop orphan roles.
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
            "repair? Tenants that differ from the registry converge, tenants without a database are marked failed, orphan roles are dropped.",
        )?;
    }
    let repair = if args.repair {
        Repair::Everything
    } else {
        Repair::Nothing
    };
    let findings = cx.engine().await?.reconcile(repair).await?;
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
