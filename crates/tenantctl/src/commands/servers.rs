//! `tenantctl servers`: database server administration.

use anyhow::Result;
use std::num::NonZeroU16;

use tenancy_core::{
    AddServer, PasswordEnv, PgName, Region, ServerHost, ServerId, ServerState, SslMode,
};

use crate::output::{self, confirm, opt, table};
use crate::{Context, Exit};

/// Database server administration.
#[derive(clap::Subcommand)]
#[command(after_help = "Example:\n  tenantctl servers list")]
pub enum Command {
    /// List servers with tenants, capacity, state and template version.
    #[command(after_help = "Example:\n  tenantctl servers list --output table")]
    List,
    /// Each server's WAL archive: the point-in-time window, archive lag, last base backup,
    /// gaps. Exits 1 when an archived server's archive lags more than --max-lag behind, has
    /// gaps or has no window.
    #[command(after_help = "Example:\n  tenantctl servers wal-status --max-lag 64MiB")]
    WalStatus {
        /// Bytes of WAL not yet archived beyond which a server counts as behind.
        #[arg(long, value_parser = parse_bytes, default_value = "64MiB")]
        max_lag: u64,
    },
    /// Register a server; its admin password is read from --password-env by every registry process.
    #[command(after_help = "Example:
  TENANCY_SERVER_PASSWORD_PG_EU_2=... tenantctl servers add --id pg-eu-2 --region eu-west \\
    --host 10.0.0.12 --admin-user postgres --password-env TENANCY_SERVER_PASSWORD_PG_EU_2 \\
    --capacity 500 --sslmode verify-full --ca-file /etc/tenancy/pg-eu-ca.pem

Connections are encrypted and the certificate checked against --ca-file (or the public web roots)
unless the host is a loopback address; --sslmode takes libpq's disable, require, verify-ca and
verify-full. The server is prepared from this process (template created and migrated), then stays
disabled until a running registry has connected to it itself and activates it (within seconds);
if it cannot be reached now, `tenantctl servers activate ID` prepares it later. The password
variable must be a TENANCY_SERVER_PASSWORD_* variable, set here and in every registry process.")]
    Add {
        #[arg(long)]
        id: ServerId,
        #[arg(long)]
        region: Region,
        #[arg(long)]
        host: ServerHost,
        #[arg(long, default_value = "5432")]
        port: NonZeroU16,
        #[arg(long)]
        admin_user: PgName,
        #[arg(long)]
        password_env: PasswordEnv,
        #[arg(long)]
        capacity: u32,
        /// How connections are encrypted [default: verify-full; disable on a loopback host].
        #[arg(long)]
        sslmode: Option<SslMode>,
        /// The CA that signs the server's certificate (PEM); the public web roots when unset.
        #[arg(long, value_name = "PATH")]
        ca_file: Option<std::path::PathBuf>,
    },
    /// Stop placing new tenants on a server; with --move, also move every tenant off it.
    #[command(after_help = "Examples:
  tenantctl servers drain pg-eu-1 --yes                        # no new tenants; its tenants stay
  tenantctl servers drain pg-eu-1 --move --concurrency 4 --yes # and move them all off it

With --move, each live tenant (active or suspended) moves to the server placement chooses in its \
region, online when the server allows it, else offline (see `tenantctl tenants move --help`), \
with a progress bar. Run it again to resume: moves under way are picked up. Deleted tenants stay \
until purged; tenants that cannot move now (provisioning, failed, deleting) are listed.
Exit status is 1 when a move failed or a tenant could not move.")]
    Drain {
        id: ServerId,
        /// Move every live tenant off the server.
        #[arg(long = "move")]
        move_tenants: bool,
        /// Moves at once (with --move).
        #[arg(long, default_value = "2", requires = "move_tenants")]
        concurrency: usize,
        /// How long to wait for each move (with --move).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
        wait: std::time::Duration,
        #[arg(long)]
        yes: bool,
    },
    /// Place new tenants on a server again (once a registry replica has connected to it).
    #[command(after_help = "Example:\n  tenantctl servers activate pg-eu-1")]
    Activate { id: ServerId },
    /// Show how the configuration file's servers differ from the registry, and apply them.
    #[command(after_help = "Examples:
  tenantctl servers sync          # show the differences, then ask
  tenantctl servers sync --yes    # apply without asking

The registry applies the configuration file's servers when it starts; this applies them without \
a restart. Servers registered through the API are left alone; a server's state (drained, \
disabled) is never changed by the file.")]
    Sync {
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(command: Command, cx: &Context) -> Result<Exit> {
    let engine = match &command {
        Command::Drain {
            id,
            yes,
            move_tenants,
            ..
        } => {
            let also = if *move_tenants {
                " Every live tenant on it will be moved to another server."
            } else {
                ""
            };
            confirm(
                *yes,
                &format!("drain server {id}? No new tenants will be placed on it.{also}"),
            )?;
            cx.engine().await?
        }
        _ => cx.engine().await?,
    };
    match command {
        Command::List => {}
        Command::WalStatus { max_lag } => {
            let all = engine.wal_status().await?;
            let behind = |s: &tenancy_core::WalStatus| {
                s.enabled
                    && (s.gaps > 0
                        || s.earliest.is_none()
                        || s.lag_bytes
                            .is_none_or(|lag| u64::try_from(lag).unwrap_or(0) > max_lag))
            };
            if cx.json {
                output::json(&all)?;
            } else {
                let lines = all.iter().map(|s| {
                    [
                        s.server_id.to_string(),
                        if s.enabled { "on" } else { "off" }.to_owned(),
                        opt(s.earliest.map(|t| t.to_rfc3339())),
                        opt(s.latest.map(|t| t.to_rfc3339())),
                        opt(s.lag_bytes),
                        opt(s.last_base_backup_at.map(|t| t.to_rfc3339())),
                        s.segments.to_string(),
                        s.gaps.to_string(),
                        if behind(s) { "behind" } else { "ok" }.to_owned(),
                    ]
                });
                println!(
                    "{}",
                    table(
                        [
                            "server",
                            "archive",
                            "earliest",
                            "latest",
                            "lag bytes",
                            "last base backup",
                            "segments",
                            "gaps",
                            "state",
                        ],
                        lines,
                    )
                );
            }
            return Ok(Exit::problems_if(all.iter().any(behind)));
        }
        Command::Add {
            id,
            region,
            host,
            port,
            admin_user,
            password_env,
            capacity,
            sslmode,
            ca_file,
        } => {
            let ca_pem = ca_file
                .map(|path| {
                    std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", path.display()))
                })
                .transpose()?;
            let request = AddServer {
                id,
                region,
                host,
                port,
                admin_user,
                password_env,
                admin_database: None,
                sslmode,
                ca_pem,
                capacity,
            };
            let env = request.password_env.clone();
            engine.register_server(&request, &cx.actor).await?;
            eprintln!(
                "server {} prepared; a registry replica places tenants on it once it has \
                 connected to it itself ({env} must be set in every replica)",
                request.id
            );
        }
        Command::Drain {
            id,
            move_tenants,
            concurrency,
            wait,
            ..
        } => {
            engine
                .set_server_state(&id, ServerState::Draining, &cx.actor)
                .await?;
            if move_tenants {
                let (plan, stuck) = engine.drain_plan(&id).await?;
                for org_id in &stuck {
                    eprintln!(
                        "tenant {org_id} cannot move now (not active or suspended): left on {id}"
                    );
                }
                let exit = super::moves::run_moves(&engine, plan, concurrency, wait, cx).await?;
                let (left, _) = engine.drain_plan(&id).await?;
                eprintln!(
                    "server {id}: {} live tenant(s) left",
                    left.len() + stuck.len()
                );
                return Ok(if stuck.is_empty() {
                    exit
                } else {
                    Exit::Problems
                });
            }
        }
        Command::Activate { id } => {
            engine.request_activation(&id, &cx.actor).await?;
            eprintln!(
                "server {id}: a registry replica places tenants on it again once it has \
                 connected to it itself"
            );
        }
        Command::Sync { yes } => {
            let changes = engine.configured_server_changes().await?;
            let pending = changes.iter().filter(|c| c.change != "unchanged").count();
            if cx.json {
                output::json(&changes)?;
            } else {
                let lines = changes
                    .iter()
                    .map(|c| [c.id.to_string(), c.change.to_owned(), c.fields.join("; ")]);
                println!("{}", table(["server", "change", "fields"], lines));
            }
            if pending == 0 {
                eprintln!("the registry already has the configuration's servers");
                return Ok(Exit::Done);
            }
            confirm(yes, &format!("apply {pending} change(s) to the registry?"))?;
            engine.apply_configured_servers(&cx.actor).await?;
            eprintln!("applied");
            return Ok(Exit::Done);
        }
    }
    let servers = engine.servers().await?;
    if cx.json {
        output::json(&servers)?;
    } else {
        let lines = servers.iter().map(|s| {
            [
                s.id.to_string(),
                s.region.to_string(),
                format!("{}:{}", s.host, s.port),
                s.state.to_string(),
                s.tenants.to_string(),
                s.capacity.to_string(),
                s.spares.to_string(),
                opt(s.template_version),
            ]
        });
        let header = [
            "id", "region", "host", "state", "tenants", "capacity", "spares", "template",
        ];
        println!("{}", table(header, lines));
    }
    Ok(Exit::Done)
}

/// `64MiB`, `1GiB`, `1048576`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("not a size: {text:?}"))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} (B, KiB, MiB or GiB)")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("too large: {text:?}"))
}
