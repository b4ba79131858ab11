//! `tenantctl migrate`: templates first, then every selected tenant database.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use tenancy_control::fleet::{FleetEvent, FleetPlan, FleetReport, MigrateOptions};

use crate::output::{opt, table};
use crate::{Context, Exit};

/// Migrate every template, then every selected tenant database, to the latest (or --target) version.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  tenantctl migrate --dry-run                  # print the plan
  tenantctl migrate --canary 3                 # three tenants first, stop if one fails
  tenantctl migrate --region eu-west --keep-going
  tenantctl migrate --org 263014839178313731 --target 4
  tenantctl migrate --template-only            # templates only (the Helm chart's upgrade hook)

A failed tenant stays at its previous version with the error recorded; rerunning continues where \
the last run stopped. Exit status is 1 when any tenant failed or was not attempted.")]
pub struct Args {
    /// The tenants to migrate (active and suspended ones unless --status says otherwise).
    #[command(flatten)]
    select: super::select::Select,
    /// Migrate to this version instead of the latest.
    #[arg(long)]
    target: Option<i32>,
    /// Tenant databases migrated at once per server.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Migrate this many tenants first, one by one; stop if any fails.
    #[arg(long, default_value_t = 0)]
    canary: usize,
    /// Go on past failed tenants instead of halting at the first.
    #[arg(long)]
    keep_going: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Migrate every server's template only, no tenant database (a deployment's upgrade hook:
    /// tenants cloned from then on are born at the new version).
    #[arg(long, conflicts_with_all = ["target", "canary", "keep_going"])]
    template_only: bool,
}

pub async fn run(args: Args, cx: &Context) -> Result<Exit> {
    let options = MigrateOptions {
        selector: args.select.into(),
        target: args.target,
        concurrency: usize::from(args.concurrency),
        canary: args.canary,
        keep_going: args.keep_going,
        templates_only: args.template_only,
    };
    let engine = cx.engine().await?;
    let mut plan = engine.plan_migration(&options).await?;
    if args.template_only {
        plan.tenants.clear();
    }
    if args.dry_run {
        print_plan(&plan, cx.json)?;
        return Ok(Exit::Done);
    }
    let bar = (!cx.json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(plan.tenants.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tenants {msg}",
            )
            .expect("valid template"),
        );
        bar
    });
    let on_event: Arc<dyn Fn(FleetEvent) + Send + Sync> = {
        let (bar, json) = (bar.clone(), cx.json);
        Arc::new(move |event: FleetEvent| progress(bar.as_ref(), json, &event))
    };
    let report = engine.migrate_fleet(&options, on_event).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    print_report(&report, cx.json);
    Ok(Exit::problems_if(!report.success()))
}

/// A progress bar on a terminal, JSON lines for scripts.
fn progress(bar: Option<&ProgressBar>, json: bool, event: &FleetEvent) {
    match bar {
        Some(bar) => match event {
            FleetEvent::TenantMigrated { .. } | FleetEvent::TenantUpToDate { .. } => bar.inc(1),
            FleetEvent::TenantFailed { org_id, .. } => {
                bar.inc(1);
                bar.println(format!("failed: {org_id}"));
            }
            FleetEvent::TemplateMigrated { server_id, version } => {
                bar.println(format!("template on {server_id} at version {version}"))
            }
            FleetEvent::Halted { reason } => bar.println(format!("halted: {reason}")),
            FleetEvent::TenantMoving { org_id, .. } => {
                bar.inc(1);
                bar.println(format!("moving, left alone: {org_id}"));
            }
        },
        None if json => {
            let line = serde_json::to_string(event).expect("serializable");
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
        None => {}
    }
}

fn print_plan(plan: &FleetPlan, json: bool) -> Result<()> {
    if json {
        return crate::output::json(plan);
    }
    let servers: Vec<String> = plan.servers.iter().map(ToString::to_string).collect();
    println!(
        "target version {}; templates on: {}",
        plan.target,
        servers.join(", ")
    );
    let lines = plan.tenants.iter().map(|t| {
        [
            t.org_id.to_string(),
            t.db_name.to_string(),
            t.server_id.to_string(),
            opt(t.from),
            t.to.to_string(),
        ]
    });
    let header = ["org_id", "database", "server", "recorded version", "to"];
    println!(
        "{}\n{} tenant(s) would be checked and migrated where behind",
        table(header, lines),
        plan.tenants.len()
    );
    Ok(())
}

fn print_report(report: &FleetReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "report": report})
        );
        return;
    }
    let header = [
        "target",
        "migrated",
        "up to date",
        "failed",
        "not attempted",
        "time",
    ];
    let line = [
        report.target.to_string(),
        report.migrated.to_string(),
        report.up_to_date.to_string(),
        report.failed.len().to_string(),
        report.not_attempted.to_string(),
        format!("{:.1}s", report.millis as f64 / 1000.0),
    ];
    println!("{}", table(header, [line]));
    for (org, error) in &report.failed {
        println!("failed {org}: {error}");
    }
    for org in &report.moving {
        println!("left alone {org}: a move is under way; migrate again once it is done");
    }
}
