//! `tenantctl psql`: an interactive session on a tenant's database.

use anyhow::{Context as _, Result};
use secrecy::ExposeSecret;
use tenancy_core::OrgId;

use crate::{Context, Exit};

/// Open psql on a tenant's database (as the server's admin user, or as the tenant's own role).
#[derive(clap::Args)]
#[command(after_help = "Examples:
  tenantctl psql 263014839178313731 -- -c 'SELECT count(*) FROM tickets'
  tenantctl psql 263014839178313731 --as-tenant -- -c 'SELECT current_user'

--as-tenant connects as the tenant's login role with its current password, to see exactly what
the tenant can (an active tenant only; a suspended one cannot log in).

The server's TLS settings are passed on (PGSSLMODE; PGSSLROOTCERT when the registry holds the
server's CA). Without a CA of its own, verify-ca and verify-full use libpq's default roots.
Exit status is psql's.")]
pub struct Args {
    org_id: OrgId,
    /// Connect as the tenant's own role instead of the server's admin user.
    #[arg(long)]
    as_tenant: bool,
    /// Extra arguments for psql, after `--`.
    #[arg(last = true)]
    args: Vec<String>,
}

pub async fn run(args: Args, cx: &Context) -> Result<Exit> {
    let engine = cx.engine().await?;
    let tenant = engine.tenant(&args.org_id).await?;
    let server = tenant.server_id.context("the tenant has no database yet")?;
    let admin = engine.server_admin(&server).await?;
    let config = admin.config();
    let password = config
        .password
        .as_ref()
        .context("no admin password for this server")?;
    let mut psql = std::process::Command::new("psql");
    psql.env("PGSSLMODE", config.sslmode().as_str());
    // libpq reads the CA from a file; one registered through the API exists only in the registry.
    let _ca_file = match (&config.ca_file, &config.ca_pem) {
        (Some(path), _) => {
            psql.env("PGSSLROOTCERT", path);
            None
        }
        (None, Some(pem)) => {
            let file = tempfile::NamedTempFile::new().context("writing the server's CA")?;
            std::fs::write(file.path(), pem).context("writing the server's CA")?;
            psql.env("PGSSLROOTCERT", file.path());
            Some(file)
        }
        (None, None) => None,
    };
    let (user, password) = if args.as_tenant {
        let info = engine.connection_info(&args.org_id).await?;
        let password = info.password.with_context(|| {
            format!(
                "tenant {} is {}: its role cannot log in",
                args.org_id, info.status
            )
        })?;
        (info.user.to_string(), password)
    } else {
        (
            config.admin_user.clone(),
            password.expose_secret().to_owned(),
        )
    };
    let status = psql
        .env("PGPASSWORD", password)
        .args(["-h", &config.host, "-p", &config.port.to_string()])
        .args(["-U", &user, "-d", tenant.db_name.as_str()])
        .args(&args.args)
        .status()
        .context("running psql (is it installed?)")?;
    Ok(match status.code() {
        Some(0) => Exit::Done,
        Some(1) => Exit::Problems,
        _ => Exit::Error,
    })
}
