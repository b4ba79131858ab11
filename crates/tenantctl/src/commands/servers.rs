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
    /// Register a server; its admin password is read from --password-env by every registry process.
    #[command(after_help = "Example:
  TENANCY_SERVER_PASSWORD_PG_EU_2=... tenantctl servers add --id pg-eu-2 --region eu-west \\
    --host 10.0.0.12 --admin-user postgres --password-env TENANCY_SERVER_PASSWORD_PG_EU_2 \\
    --capacity 500 --sslmode verify-full --ca-file /etc/tenancy/pg-eu-ca.pem

Connections are encrypted and the certificate checked against --ca-file (or the public web roots)
unless the host is a loopback address; --sslmode takes libpq's disable, require, verify-ca and
verify-full. The server stays disabled until it has been prepared (template created and migrated); if it
cannot be reached now, `tenantctl servers activate ID` prepares it later. The password variable
must be a TENANCY_SERVER_PASSWORD_* variable, set in every registry process.")]
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
        Command::Drain { id, yes } => {
            confirm(
                *yes,
                &format!("drain server {id}? No new tenants will be placed on it."),
            )?;
            cx.engine().await?
        }
        _ => cx.engine().await?,
    };
    match command {
        Command::List => {}
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
            engine.add_server(&request, &cx.actor).await?;
        }
        Command::Drain { id, .. } => {
            engine
                .set_server_state(&id, ServerState::Draining, &cx.actor)
                .await?;
        }
        Command::Activate { id } => {
            engine
                .set_server_state(&id, ServerState::Active, &cx.actor)
                .await?;
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
