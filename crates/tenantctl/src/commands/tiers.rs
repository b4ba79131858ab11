//! `tenantctl tiers`: the configured tiers and how far a change of their figures has rolled out.
//! Reads only.

use anyhow::Result;

use crate::output::table;
use crate::{Context, Exit};

/// The configured tiers, their tenants, and whether changed figures have reached them all.
#[derive(clap::Args)]
#[command(
    after_help = "A registry that starts with changed tier figures (connection limit,
timeouts, temp file limit) queues a `retier` of every tenant of that tier; this shows how
far that got. Run it again to follow the progress.

Example:
  tenantctl tiers --output json

Exit status is 1 while a tier is not rolled out."
)]
pub struct Args {}

pub async fn run(_args: Args, cx: &Context) -> Result<Exit> {
    let tiers = cx.engine().await?.tier_status().await?;
    if cx.json {
        crate::output::json(&tiers)?;
    } else {
        let lines = tiers.iter().map(|t| {
            [
                t.tier.to_string(),
                t.tenants.to_string(),
                if t.rolled_out { "yes" } else { "pending" }.to_owned(),
                t.retiers_open.to_string(),
                t.figures.clone(),
            ]
        });
        let header = [
            "tier",
            "tenants",
            "rolled out",
            "retiers open",
            "role figures",
        ];
        println!("{}", table(header, lines));
    }
    Ok(Exit::problems_if(tiers.iter().any(|t| !t.rolled_out)))
}
