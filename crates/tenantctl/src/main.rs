//! `tenantctl`: the operator CLI, on the same configuration file as the registry.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::ExposeSecret;
use tenancy_control::fleet::{FleetEvent, MigrateOptions};
use tenancy_control::{Actor, Config, Engine, Onboarded, TenantFilter};
use tenancy_core::{
    AddServer, CreateTenant, Operation, OperationState, OrgId, Region, ServerId, ServerState,
    Tenant, TenantStatus, Tier,
};

#[derive(Parser)]
#[command(
    name = "tenantctl",
    version,
    about = "Operate the tenant fleet: migrations, status and drift, tenants, servers",
    long_about = "Operate the tenant fleet: migrate the template and every tenant database, see versions \
                  and drift, administer tenants and database servers.\n\n\
                  tenantctl reads the same configuration as the registry (--config or TENANCY_CONFIG, \
                  secrets from the environment variables it names).",
    after_help = "Examples:\n  \
        tenantctl status\n  \
        tenantctl migrate --dry-run\n  \
        tenantctl migrate --canary 5 --concurrency 8\n  \
        tenantctl tenants create 263014839178313731 'Acme Corp' --wait 60s\n  \
        tenantctl psql 263014839178313731"
)]
struct Cli {
    /// Configuration file (the registry's).
    #[arg(long, global = true, env = "TENANCY_CONFIG")]
    config: Option<PathBuf>,
    /// Output: a table for people, JSON for scripts. `auto` is a table on a terminal.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Auto,
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate every template, then every selected tenant database, to the latest (or --target) version.
    #[command(after_help = "Examples:\n  \
        tenantctl migrate --dry-run                  # print the plan\n  \
        tenantctl migrate --canary 3                 # three tenants first, stop if one fails\n  \
        tenantctl migrate --region eu-west --keep-going\n  \
        tenantctl migrate --org 263014839178313731 --target 4\n\n\
        A failed tenant stays at its previous version with the error recorded; rerunning continues \
        where the last run stopped. Exit status is 1 when any tenant failed or was not attempted.")]
    Migrate(MigrateArgs),
    /// Versions per tenant and template, and drift: tenants behind the template, or at its version with a different schema.
    #[command(after_help = "Example:\n  tenantctl status --drift-only --output json")]
    Status {
        /// Only tenants with drift.
        #[arg(long)]
        drift_only: bool,
    },
    /// Tenant administration.
    #[command(subcommand, after_help = "Example:\n  tenantctl tenants list")]
    Tenants(TenantsCommand),
    /// Database server administration.
    #[command(subcommand, after_help = "Example:\n  tenantctl servers list")]
    Servers(ServersCommand),
    /// Compare the registry with the servers; --repair fixes what is safe to fix.
    #[command(after_help = "Example:\n  tenantctl reconcile --repair")]
    Reconcile {
        #[arg(long)]
        repair: bool,
    },
    /// Open psql on a tenant's database (as the server's admin user).
    #[command(
        after_help = "Example:\n  tenantctl psql 263014839178313731 -- -c 'SELECT count(*) FROM tickets'"
    )]
    Psql {
        org_id: OrgId,
        /// Extra arguments for psql, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[derive(Args)]
struct MigrateArgs {
    /// Only these organizations (repeatable).
    #[arg(long = "org")]
    org_ids: Vec<OrgId>,
    #[arg(long)]
    region: Option<Region>,
    #[arg(long)]
    server: Option<ServerId>,
    #[arg(long)]
    tier: Option<Tier>,
    /// Statuses to include (repeatable); active and suspended by default.
    #[arg(long)]
    status: Vec<TenantStatus>,
    /// Migrate to this version instead of the latest.
    #[arg(long)]
    target: Option<i32>,
    /// Tenant databases migrated at once per server.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Migrate this many tenants first, one by one; stop if any fails.
    #[arg(long, default_value_t = 0)]
    canary: usize,
    /// Go on past failed tenants instead of halting at the first.
    #[arg(long)]
    keep_going: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// List tenants.
    #[command(after_help = "Example:\n  tenantctl tenants list --status suspended --output json")]
    List {
        #[arg(long)]
        status: Option<TenantStatus>,
        #[arg(long)]
        region: Option<Region>,
        #[arg(long)]
        tier: Option<Tier>,
    },
    /// One tenant and its recent operations.
    #[command(after_help = "Example:\n  tenantctl tenants show 263014839178313731")]
    Show { org_id: OrgId },
    /// Onboard an organization.
    #[command(
        after_help = "Example:\n  tenantctl tenants create 263014839178313731 'Acme Corp' --tier standard --wait 60s"
    )]
    Create {
        org_id: OrgId,
        name: String,
        #[arg(long)]
        slug: Option<String>,
        #[arg(long)]
        region: Option<Region>,
        #[arg(long)]
        tier: Option<Tier>,
        /// Wait for the tenant to be active (runs workers in this process meanwhile).
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
    },
    /// Suspend: the tenant can no longer connect, open sessions end.
    #[command(after_help = "Example:\n  tenantctl tenants suspend 263014839178313731 --yes")]
    Suspend {
        org_id: OrgId,
        #[arg(long)]
        yes: bool,
    },
    /// Resume a suspended tenant.
    #[command(after_help = "Example:\n  tenantctl tenants resume 263014839178313731")]
    Resume { org_id: OrgId },
    /// Delete (kept for the retention period), or with --purge drop a deleted tenant's database now.
    #[command(
        after_help = "Examples:\n  tenantctl tenants delete 263014839178313731\n  tenantctl tenants delete 263014839178313731 --purge --yes"
    )]
    Delete {
        org_id: OrgId,
        #[arg(long)]
        purge: bool,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum ServersCommand {
    /// List servers with tenants, capacity, state and template version.
    #[command(after_help = "Example:\n  tenantctl servers list --output table")]
    List,
    /// Register a server; its admin password is read from --password-env by every registry process.
    #[command(
        after_help = "Example:\n  PG_EU2_PASSWORD=... tenantctl servers add --id pg-eu-2 --region eu-west --host 10.0.0.12 \\\n    --admin-user postgres --password-env PG_EU2_PASSWORD --capacity 500"
    )]
    Add {
        #[arg(long)]
        id: ServerId,
        #[arg(long)]
        region: Region,
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = 5432)]
        port: u16,
        #[arg(long)]
        admin_user: String,
        #[arg(long)]
        password_env: String,
        #[arg(long)]
        capacity: u32,
    },
    /// Stop placing new tenants on a server (its tenants stay).
    #[command(after_help = "Example:\n  tenantctl servers drain pg-eu-1 --yes")]
    Drain {
        id: ServerId,
        #[arg(long)]
        yes: bool,
    },
    /// Place new tenants on a server again.
    #[command(after_help = "Example:\n  tenantctl servers activate pg-eu-1")]
    Activate { id: ServerId },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TENANTCTL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn json_output(output: Output) -> bool {
    match output {
        Output::Json => true,
        Output::Table => false,
        Output::Auto => !std::io::stdout().is_terminal(),
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    let engine = Engine::connect(config)
        .await
        .context("connecting to the registry")?;
    let json = json_output(cli.output);
    let actor = Actor::named(format!(
        "tenantctl:{}",
        std::env::var("USER").unwrap_or_else(|_| "operator".into())
    ));
    match cli.command {
        Command::Migrate(args) => migrate(&engine, args, json).await,
        Command::Status { drift_only } => {
            let mut rows = engine.fleet_status().await?;
            if drift_only {
                rows.retain(|r| r.drift != tenancy_control::fleet::Drift::None);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let lines = rows.iter().map(|r| {
                    Ok([
                        r.org_id.clone(),
                        r.db_name.clone(),
                        r.server_id.clone(),
                        r.status.clone(),
                        opt(r.version),
                        opt(r.template_version),
                        label(&r.drift)?,
                        r.last_migration_error.clone().unwrap_or_default(),
                    ])
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
                println!("{}", table(header, lines.collect::<Result<Vec<_>>>()?));
            }
            Ok(i32::from(
                rows.iter()
                    .any(|r| r.drift != tenancy_control::fleet::Drift::None),
            ))
        }
        Command::Tenants(command) => tenants(&engine, command, json, &actor).await,
        Command::Servers(command) => servers(&engine, command, json, &actor).await,
        Command::Reconcile { repair } => {
            let drift = engine.reconcile(repair).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&drift)?);
            } else if drift.is_empty() {
                println!("no drift");
            } else {
                let lines = drift.iter().map(|d| {
                    Ok([
                        label(&d.kind)?,
                        d.server_id
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        d.name.clone(),
                        d.repaired.to_string(),
                        d.detail.clone(),
                    ])
                });
                let header = ["kind", "server", "name", "repaired", "detail"];
                println!("{}", table(header, lines.collect::<Result<Vec<_>>>()?));
            }
            Ok(i32::from(drift.iter().any(|d| !d.repaired)))
        }
        Command::Psql { org_id, args } => {
            let tenant = engine.tenant(&org_id).await?;
            let server = tenant.server_id.context("the tenant has no database yet")?;
            let admin = engine.server_admin(&server).await?;
            let config = admin.config();
            let password = config
                .password
                .as_ref()
                .context("no admin password for this server")?;
            let status = std::process::Command::new("psql")
                .env("PGPASSWORD", password.expose_secret())
                .args([
                    "-h",
                    &config.host,
                    "-p",
                    &config.port.to_string(),
                    "-U",
                    &config.admin_user,
                ])
                .args(["-d", tenant.db_name.as_str()])
                .args(args)
                .status()
                .context("running psql (is it installed?)")?;
            Ok(status.code().unwrap_or(1))
        }
    }
}

async fn migrate(engine: &Engine, args: MigrateArgs, json: bool) -> Result<i32> {
    let options = MigrateOptions {
        org_ids: args.org_ids,
        region: args.region,
        server: args.server,
        tier: args.tier,
        statuses: args.status,
        target: args.target,
        concurrency: args.concurrency,
        canary: args.canary,
        keep_going: args.keep_going,
    };
    let plan = engine.plan_migration(&options).await?;
    if args.dry_run {
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            println!(
                "target version {}; templates on: {}",
                plan.target,
                plan.servers.join(", ")
            );
            let lines = plan.tenants.iter().map(|t| {
                [
                    t.org_id.clone(),
                    t.db_name.clone(),
                    t.server_id.clone(),
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
        }
        return Ok(0);
    }
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(plan.tenants.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tenants {msg}",
            )
            .expect("valid template"),
        );
        bar
    });
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let on_event: Arc<dyn Fn(FleetEvent) + Send + Sync> = {
        let bar = bar.clone();
        let failures = failures.clone();
        Arc::new(move |event: FleetEvent| {
            if let FleetEvent::TenantFailed { org_id, error, .. } = &event {
                failures
                    .lock()
                    .expect("lock")
                    .push((org_id.clone(), error.clone()));
            }
            match &bar {
                Some(bar) => match &event {
                    FleetEvent::TenantMigrated { .. } | FleetEvent::TenantUpToDate { .. } => {
                        bar.inc(1)
                    }
                    FleetEvent::TenantFailed { org_id, .. } => {
                        bar.inc(1);
                        bar.println(format!("failed: {org_id}"));
                    }
                    FleetEvent::TemplateMigrated { server_id, version } => {
                        bar.println(format!("template on {server_id} at version {version}"))
                    }
                    FleetEvent::Halted { reason } => bar.println(format!("halted: {reason}")),
                },
                None if json => {
                    let line = serde_json::to_string(&event).expect("serializable");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                }
                None => {}
            }
        })
    };
    let report = engine.migrate_fleet(&options, on_event).await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "report": report})
        );
    } else {
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
    }
    Ok(i32::from(!report.success()))
}

async fn tenants(
    engine: &Engine,
    command: TenantsCommand,
    json: bool,
    actor: &Actor,
) -> Result<i32> {
    match command {
        TenantsCommand::List {
            status,
            region,
            tier,
        } => {
            let filter = TenantFilter {
                status,
                region,
                tier,
                ..Default::default()
            };
            let all = engine
                .all_tenants(&filter)
                .await?
                .iter()
                .map(|row| row.to_tenant())
                .collect::<Result<Vec<_>, _>>()?;
            print_tenants(&all, json)?;
        }
        TenantsCommand::Show { org_id } => {
            let tenant = engine.tenant(&org_id).await?;
            let ops = engine.tenant_operations(&org_id, 10).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"tenant": tenant, "operations": ops})
                    )?
                );
            } else {
                print_tenants(std::slice::from_ref(&tenant), false)?;
                print_operations(&ops);
            }
        }
        TenantsCommand::Create {
            org_id,
            name,
            slug,
            region,
            tier,
            wait,
        } => {
            let request = CreateTenant {
                slug: slug.map(|s| s.parse()).transpose()?,
                region,
                tier,
                ..CreateTenant::new(org_id, name.parse()?)
            };
            match engine.onboard(request, actor).await? {
                Onboarded::Existing { tenant } => print_tenants(&[tenant], json)?,
                Onboarded::Created { tenant, operation } => {
                    let op = finish(engine, operation, wait).await?;
                    print_operations(std::slice::from_ref(&op));
                    print_tenants(&[engine.tenant(&tenant.org_id).await?], json)?;
                    return Ok(i32::from(op.state == OperationState::Failed));
                }
            }
        }
        TenantsCommand::Suspend { org_id, yes } => {
            confirm(
                yes,
                &format!("suspend tenant {org_id}? Its sessions will be ended."),
            )?;
            let op = engine.suspend(&org_id, actor).await?;
            print_operations(&[finish(engine, op, Some(Duration::from_secs(60))).await?]);
        }
        TenantsCommand::Resume { org_id } => {
            let op = engine.resume(&org_id, actor).await?;
            print_operations(&[finish(engine, op, Some(Duration::from_secs(60))).await?]);
        }
        TenantsCommand::Delete { org_id, purge, yes } => {
            let op = if purge {
                confirm(
                    yes,
                    &format!(
                        "drop tenant {org_id}'s database and role now? This cannot be undone."
                    ),
                )?;
                engine.purge(&org_id, actor).await?
            } else {
                confirm(
                    yes,
                    &format!(
                        "delete tenant {org_id}? It is refused at once; its database is kept for the retention period."
                    ),
                )?;
                engine.delete(&org_id, actor).await?
            };
            print_operations(&[finish(engine, op, Some(Duration::from_secs(60))).await?]);
        }
    }
    Ok(0)
}

/// Runs workers in this process while waiting, so the command works with no registry running.
async fn finish(engine: &Engine, op: Operation, wait: Option<Duration>) -> Result<Operation> {
    let Some(wait) = wait else { return Ok(op) };
    let workers = engine.run_workers();
    let result = engine.wait_operation(op.id, wait).await;
    workers.shutdown().await;
    Ok(result?)
}

async fn servers(
    engine: &Engine,
    command: ServersCommand,
    json: bool,
    actor: &Actor,
) -> Result<i32> {
    match command {
        ServersCommand::List => {}
        ServersCommand::Add {
            id,
            region,
            host,
            port,
            admin_user,
            password_env,
            capacity,
        } => {
            let request = AddServer {
                id,
                region,
                host,
                port,
                admin_user,
                password_env,
                admin_database: None,
                capacity,
            };
            engine.add_server(&request, actor).await?;
        }
        ServersCommand::Drain { id, yes } => {
            confirm(
                yes,
                &format!("drain server {id}? No new tenants will be placed on it."),
            )?;
            engine
                .set_server_state(&id, ServerState::Draining, actor)
                .await?;
        }
        ServersCommand::Activate { id } => {
            engine
                .set_server_state(&id, ServerState::Active, actor)
                .await?
        }
    }
    let servers = engine.servers().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&servers)?);
    } else {
        let lines = servers.iter().map(|s| {
            [
                s.id.to_string(),
                s.region.to_string(),
                format!("{}:{}", s.host, s.port),
                s.state.to_string(),
                s.tenants.to_string(),
                s.capacity.to_string(),
                opt(s.template_version),
            ]
        });
        let header = [
            "id", "region", "host", "state", "tenants", "capacity", "template",
        ];
        println!("{}", table(header, lines));
    }
    Ok(0)
}

fn print_tenants(tenants: &[Tenant], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(tenants)?);
        return Ok(());
    }
    let lines = tenants.iter().map(|t| {
        [
            t.org_id.to_string(),
            t.name.to_string(),
            t.db_name.to_string(),
            t.server_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            t.tier.to_string(),
            t.status.to_string(),
            opt(t.schema_version),
        ]
    });
    let header = [
        "org_id", "name", "database", "server", "tier", "status", "version",
    ];
    println!("{}", table(header, lines));
    Ok(())
}

fn print_operations(ops: &[Operation]) {
    for op in ops {
        let error = op
            .last_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        eprintln!(
            "operation {} {} {}: {} at step {}{error}",
            op.id, op.kind, op.org_id, op.state, op.step
        );
    }
}

/// A table for people: a header, then a line per row.
fn table<const N: usize>(header: [&str; N], lines: impl IntoIterator<Item = [String; N]>) -> Table {
    let mut table = Table::new();
    table.set_header(header);
    for line in lines {
        table.add_row(line);
    }
    table
}

/// How a value names itself in JSON (`"behind"`, `"orphan_database"`): the same words in tables.
fn label(value: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_value(value)?
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

fn opt(v: Option<i32>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Destructive commands ask first, unless `--yes`; without a terminal they refuse.
fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Pass --yes to confirm (no terminal to ask on).");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("cancelled")
    }
}
