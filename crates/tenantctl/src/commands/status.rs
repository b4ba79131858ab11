//! `tenantctl status`: versions per tenant and template, and schema drift. Reads only.

use anyhow::Result;
use tenancy_control::fleet::SchemaDrift;

use crate::output::{label, opt, table};
use crate::{Context, Exit};

/// Versions per tenant and template, and drift: tenants behind the template, or at its version with a different schema.
#[derive(clap::Args)]
#[command(after_help = "Example:
  tenantctl status --drift-only --output json

Exit status is 1 when any tenant has drift.")]
pub struct Args {
    /// Only tenants with drift.
    #[arg(long)]
    drift_only: bool,
}

pub async fn run(args: Args, cx: &Context) -> Result<Exit> {
    let mut rows = cx.engine().await?.fleet_status().await?;
    if args.drift_only {
        rows.retain(|r| r.drift != SchemaDrift::None);
    }
    if cx.json {
        crate::output::json(&rows)?;
    } else if rows.is_empty() {
        println!(
            "{}",
            if args.drift_only {
                "no drift: every tenant database is at its server's template version"
            } else {
                "no tenants"
            }
        );
    } else {
        let lines = rows.iter().map(|r| {
            [
                r.org_id.to_string(),
                r.db_name.to_string(),
                r.server_id.to_string(),
                r.status.to_string(),
                opt(r.version),
                opt(r.template_version),
                label(&r.drift),
                r.last_migration_error.clone().unwrap_or_default(),
            ]
        });
        let header = [
            "org_id",
            "database",
            "server",
            "status",
            "version",
            "template",
            "drift",
            "last error",
        ];
        println!("{}", table(header, lines));
    }
    Ok(Exit::problems_if(
        rows.iter().any(|r| r.drift != SchemaDrift::None),
    ))
}
