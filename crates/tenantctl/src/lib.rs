//! `tenantctl`, the operator CLI, on the same configuration file as the registry. One file per
//! command in `commands/` (its arguments and its `run`), output helpers in `output`.
//!
//! Commands that only read connect read-only: no registry migration, no server records written,
//! no DDL. Destructive commands ask before connecting (or take `--yes`). Commands that wait for
//! an operation run that operation, and only that one, when no registry worker has it.

mod commands;
mod output;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use tenancy_control::{Actor, Config, Engine};

pub use output::Output;

const AFTER_HELP: &str = "\
Examples:
  tenantctl status
  tenantctl migrate --dry-run
  tenantctl migrate --canary 5 --concurrency 8
  tenantctl tenants create 263014839178313731 'Acme Corp' --wait 60s
  tenantctl servers sync
  tenantctl backups create 263014839178313731
  tenantctl psql 263014839178313731
  tenantctl zitadel bootstrap --issuer https://id.example.com --pat-file admin.pat --out zitadel/

Exit status:
  0  done, nothing to report
  1  done, with problems to look at: tenants that failed or were not attempted, drift, findings
     left unrepaired, an operation that failed
  2  error: bad arguments, configuration, the registry unreachable, or a refusal (cancelled,
     --yes needed)";

#[derive(Parser)]
#[command(
    name = "tenantctl",
    version,
    about = "Operate the tenant fleet: migrations, status and drift, tenants, servers",
    long_about = "Operate the tenant fleet: migrate the template and every tenant database, see \
                  versions and drift, administer tenants and database servers.\n\n\
                  tenantctl reads the same configuration as the registry (--config or \
                  TENANCY_CONFIG, secrets from the environment variables it names). It never \
                  migrates the registry database: start the registry service once first.",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Configuration file (the registry's).
    #[arg(long, global = true, env = "TENANCY_CONFIG")]
    config: Option<PathBuf>,
    /// Output: a table for people, JSON for scripts. `auto` is a table on a terminal.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Migrate(commands::migrate::Args),
    Status(commands::status::Args),
    #[command(subcommand)]
    Tenants(commands::tenants::Command),
    #[command(subcommand)]
    Servers(commands::servers::Command),
    /// Tenant backups: create, list, download, restore, verify.
    #[command(subcommand)]
    Backups(commands::backups::Command),
    Reconcile(commands::reconcile::Args),
    Rekey(commands::rekey::Args),
    Rebalance(commands::moves::RebalanceArgs),
    Tiers(commands::tiers::Args),
    Psql(commands::psql::Args),
    /// Set up a ZITADEL instance for the registry.
    #[command(subcommand)]
    Zitadel(commands::zitadel::Command),
}

/// How a command ended: the process's exit status (see the top-level `--help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done, nothing to report.
    Done,
    /// 1: done, with problems to look at.
    Problems,
    /// 2: an error; nothing (more) was done.
    Error,
}

impl Exit {
    /// `Problems` when `any`, else `Done`.
    fn problems_if(any: bool) -> Self {
        if any { Exit::Problems } else { Exit::Done }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(match exit {
            Exit::Done => 0,
            Exit::Problems => 1,
            Exit::Error => 2,
        })
    }
}

/// What every command gets: the output format and a way to connect, read-only.
pub(crate) struct Context {
    config: Option<PathBuf>,
    pub json: bool,
    pub actor: Actor,
}

impl Context {
    /// Loads the configuration and connects to the registry without changing anything.
    pub async fn engine(&self) -> Result<Engine> {
        let config = Config::load(self.config.as_deref()).context("loading configuration")?;
        Engine::connect(config)
            .await
            .context("connecting to the registry")
    }
}

/// Runs a parsed command line; errors are printed here.
pub async fn run(cli: Cli) -> Exit {
    let cx = Context {
        config: cli.config,
        json: cli.output.is_json(),
        actor: Actor::named(format!(
            "tenantctl:{}",
            std::env::var("USER").unwrap_or_else(|_| "operator".into())
        )),
    };
    let result = match cli.command {
        Command::Migrate(args) => commands::migrate::run(args, &cx).await,
        Command::Status(args) => commands::status::run(args, &cx).await,
        Command::Tenants(command) => commands::tenants::run(command, &cx).await,
        Command::Servers(command) => commands::servers::run(command, &cx).await,
        Command::Backups(command) => commands::backups::run(command, &cx).await,
        Command::Reconcile(args) => commands::reconcile::run(args, &cx).await,
        Command::Rekey(args) => commands::rekey::run(args, &cx).await,
        Command::Rebalance(args) => commands::moves::rebalance(args, &cx).await,
        Command::Tiers(args) => commands::tiers::run(args, &cx).await,
        Command::Psql(args) => commands::psql::run(args, &cx).await,
        Command::Zitadel(command) => commands::zitadel::run(command, &cx).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        Exit::Error
    })
}

/// Logs to stderr, filtered by `TENANTCTL_LOG` (warnings by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TENANTCTL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
