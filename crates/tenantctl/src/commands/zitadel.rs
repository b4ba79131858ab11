//! `tenantctl zitadel bootstrap`: sets up a ZITADEL instance for the registry with an instance
//! owner's token, once, and writes the registry's ZITADEL settings and key files.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use tenancy_zitadel::{
    Ensured, KeyFile, Management, ManagementConfig, NewKey, ServiceAccount, roles,
};

use crate::output;
use crate::{Context, Exit};

#[derive(clap::Subcommand)]
pub enum Command {
    Bootstrap(BootstrapArgs),
}

/// Create what the registry needs in a ZITADEL instance, or find it: the project with its roles
/// and role assertion, the API application (private-key JWT) for introspection and its key, the
/// registry's service account (an instance manager) and its key, a machine user for router
/// services with `tenant_router` and a personal access token. Writes `registry.env`, the key
/// files and `router.env` into --out. Safe to run again: what exists is kept, and a key or
/// token already in --out for the same user or application is reused.
#[derive(clap::Args)]
#[command(after_help = "Example (the compose file's bootstrap service):
  tenantctl zitadel bootstrap --issuer http://zitadel.localhost:8080 \\
    --pat-file /zitadel-bootstrap/admin.pat --out /bootstrap \\
    --platform-admin zitadel-admin@zitadel.zitadel.localhost

The registry then reads registry.env (compose sources it; on Kubernetes, make it a Secret:
kubectl create secret generic tenancy-zitadel --from-env-file=registry.env). The owner's token
is used for this command only: the registry uses its own service account's key.
Exit status is 0 when everything is in place, 2 on an error (run it again: it resumes).")]
pub struct BootstrapArgs {
    /// The instance URL, exactly as tokens name it (`iss`).
    #[arg(long, env = "TENANCY_ZITADEL_ISSUER")]
    issuer: String,
    /// A file holding a personal access token of an instance owner (IAM_OWNER).
    #[arg(long)]
    pat_file: PathBuf,
    /// Directory to write `registry.env` and the key files into (created, mode 0700).
    #[arg(long)]
    out: PathBuf,
    /// Where the registry will find the key files, when not at --out (a mounted volume).
    #[arg(long)]
    files_at: Option<PathBuf>,
    /// The project's name.
    #[arg(long, default_value = "tenancy")]
    project: String,
    /// The platform's own organization, where the project lives and platform roles count
    /// (default: the organization of the token's owner).
    #[arg(long)]
    org_id: Option<String>,
    /// The instance manager role of the registry's service account: it creates organizations
    /// and users in them and grants project roles there.
    #[arg(long, default_value = "IAM_ORG_MANAGER")]
    registry_role: String,
    /// User names (login names) in the platform organization to grant `platform_admin`.
    #[arg(long = "platform-admin")]
    platform_admins: Vec<String>,
    /// Where browsers reach the registry's admin console (`https://registry.example.com`): the
    /// console's web application (code flow with PKCE) is made for it, and its client id and
    /// address written to registry.env.
    #[arg(long, value_parser = console_origin)]
    console_url: Option<String>,
}

/// An origin: `http(s)://host[:port]`, nothing after it.
fn console_origin(text: &str) -> Result<String, String> {
    let trimmed = text.trim_end_matches('/');
    let scheme_ok = trimmed.starts_with("https://") || trimmed.starts_with("http://");
    let rest = trimmed
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or_default();
    if !scheme_ok || rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{text:?} is not an origin such as https://registry.example.com"
        ));
    }
    Ok(trimmed.to_owned())
}

/// The registry's service account, the router services' machine user, the API application.
const REGISTRY_USER: &str = "tenancy-registry";
const ROUTER_USER: &str = "tenancy-router";
const API_APPLICATION: &str = "tenancy-registry";
const CONSOLE_APPLICATION: &str = "tenancy-console";
const SERVICE_ACCOUNT_FILE: &str = "service-account.json";
const APPLICATION_FILE: &str = "api-application.json";
/// The router services' settings: their token (a personal access token of the router user).
const ROUTER_ENV_FILE: &str = "router.env";
const ROUTER_USER_VAR: &str = "TENANCY_ROUTER_USER_ID";
const ENV_FILE: &str = "registry.env";

/// One line of the report: what, its id, and whether it was created, found, written or kept.
#[derive(Debug, Serialize)]
struct Done {
    what: String,
    id: String,
    outcome: &'static str,
}

impl Done {
    fn ensured(what: impl Into<String>, id: &str, ensured: Ensured) -> Self {
        let outcome = if ensured.created() {
            "created"
        } else {
            "existing"
        };
        Self {
            what: what.into(),
            id: id.into(),
            outcome,
        }
    }
}

pub async fn run(command: Command, cx: &Context) -> Result<Exit> {
    match command {
        Command::Bootstrap(args) => bootstrap(args, cx).await,
    }
}

async fn bootstrap(args: BootstrapArgs, cx: &Context) -> Result<Exit> {
    let pat = std::fs::read_to_string(&args.pat_file)
        .with_context(|| format!("reading {}", args.pat_file.display()))?;
    let pat = pat.trim();
    if pat.is_empty() {
        bail!("{} is empty", args.pat_file.display());
    }
    let zitadel = Management::new(ManagementConfig::new(
        args.issuer.trim_end_matches('/'),
        ServiceAccount::Pat(SecretString::from(pat.to_owned())),
    ))?;
    create_private_dir(&args.out)?;
    let files_at = args.files_at.clone().unwrap_or_else(|| args.out.clone());
    let mut report = Vec::new();

    let org_id = match &args.org_id {
        Some(id) => id.clone(),
        None => zitadel.my_organization().await?.0,
    };
    report.push(Done {
        what: "platform organization".into(),
        id: org_id.clone(),
        outcome: "existing",
    });

    let (project, ensured) = zitadel.ensure_project(&org_id, &args.project).await?;
    report.push(Done::ensured(
        format!("project {} (role assertion on)", args.project),
        &project.id,
        ensured,
    ));
    for role in [
        roles::PLATFORM_ADMIN,
        roles::TENANT_ADMIN,
        roles::TENANT_ROUTER,
    ] {
        let ensured = zitadel
            .ensure_project_role(&org_id, &project.id, role, role)
            .await?;
        report.push(Done::ensured(format!("role {role}"), &project.id, ensured));
    }

    let (app, ensured) = zitadel
        .ensure_api_application(&org_id, &project.id, API_APPLICATION)
        .await?;
    report.push(Done::ensured(
        format!("API application {API_APPLICATION} (private-key JWT)"),
        &app.id,
        ensured,
    ));
    let app_key = args.out.join(APPLICATION_FILE);
    report.push(
        ensure_key_file(
            &app_key,
            |file| file.client_id.as_deref() == Some(&app.client_id),
            || zitadel.add_application_key(&org_id, &project.id, &app.id),
        )
        .await?,
    );

    let (registry, ensured) = zitadel
        .ensure_machine_user(
            &org_id,
            REGISTRY_USER,
            "Tenancy registry",
            "The tenant registry's service account",
        )
        .await?;
    report.push(Done::ensured(
        format!("service account {REGISTRY_USER}"),
        &registry,
        ensured,
    ));
    let ensured = zitadel
        .ensure_instance_member(&registry, &[args.registry_role.as_str()])
        .await?;
    report.push(Done::ensured(
        format!("instance manager {} of {REGISTRY_USER}", args.registry_role),
        &registry,
        ensured,
    ));
    let service_key = args.out.join(SERVICE_ACCOUNT_FILE);
    report.push(
        ensure_key_file(
            &service_key,
            |file| file.user_id.as_deref() == Some(&registry),
            || zitadel.add_machine_key(&org_id, &registry),
        )
        .await?,
    );

    let (router, ensured) = zitadel
        .ensure_machine_user(
            &org_id,
            ROUTER_USER,
            "Tenancy router",
            "Product services that route to tenant databases",
        )
        .await?;
    report.push(Done::ensured(
        format!("machine user {ROUTER_USER}"),
        &router,
        ensured,
    ));
    zitadel
        .grant_roles(&org_id, &router, &project.id, &[roles::TENANT_ROUTER])
        .await?;
    report.push(Done {
        what: format!("{} granted to {ROUTER_USER}", roles::TENANT_ROUTER),
        id: router.clone(),
        outcome: "ensured",
    });
    let router_env = args.out.join(ROUTER_ENV_FILE);
    let kept = std::fs::read_to_string(&router_env).is_ok_and(|text| {
        text.lines()
            .any(|l| l == format!("{ROUTER_USER_VAR}={router}"))
    });
    if !kept {
        let token = zitadel.add_personal_access_token(&org_id, &router).await?;
        let env = [
            (ROUTER_USER_VAR, router.clone()),
            ("ZITADEL_ISSUER", args.issuer.clone()),
            ("ZITADEL_PROJECT_ID", project.id.clone()),
            ("REGISTRY_TOKEN", token.expose_secret().to_owned()),
        ];
        write_private(&router_env, &env_file(&env)?)?;
    }
    report.push(Done {
        what: format!("router token {}", router_env.display()),
        id: router.clone(),
        outcome: if kept { "kept" } else { "created" },
    });

    for name in &args.platform_admins {
        let Some(user) = zitadel.find_user_by_name(&org_id, name).await? else {
            bail!("no user {name:?} in organization {org_id}");
        };
        zitadel
            .grant_roles(&org_id, &user, &project.id, &[roles::PLATFORM_ADMIN])
            .await?;
        report.push(Done {
            what: format!("{} granted to {name}", roles::PLATFORM_ADMIN),
            id: user,
            outcome: "ensured",
        });
    }

    let mut console = Vec::new();
    if let Some(url) = &args.console_url {
        let (web, ensured) = zitadel
            .ensure_web_application(
                &org_id,
                &project.id,
                CONSOLE_APPLICATION,
                &format!("{url}/console/callback"),
                &format!("{url}/console/signin"),
            )
            .await?;
        report.push(Done::ensured(
            format!("web application {CONSOLE_APPLICATION} (PKCE) for {url}"),
            &web.id,
            ensured,
        ));
        console.push(("TENANCY_CONSOLE__CLIENT_ID", web.client_id));
        console.push(("TENANCY_CONSOLE__PUBLIC_URL", url.clone()));
    }

    let mut env = vec![
        ("TENANCY_ZITADEL_ISSUER", args.issuer.clone()),
        ("TENANCY_ZITADEL_PROJECT_ID", project.id.clone()),
        ("TENANCY_ZITADEL_PLATFORM_ORG_ID", org_id.clone()),
        ("TENANCY_ZITADEL_CLIENT_ID", app.client_id.clone()),
        (
            "TENANCY_ZITADEL_APPLICATION_KEY_FILE",
            files_at.join(APPLICATION_FILE).display().to_string(),
        ),
        (
            "TENANCY_ZITADEL_SERVICE_ACCOUNT_KEY_FILE",
            files_at.join(SERVICE_ACCOUNT_FILE).display().to_string(),
        ),
    ];
    env.extend(console);
    let env_path = args.out.join(ENV_FILE);
    write_private(&env_path, &env_file(&env)?)?;
    report.push(Done {
        what: format!("registry settings {}", env_path.display()),
        id: String::new(),
        outcome: "written",
    });

    if cx.json {
        output::json(&report)?;
    } else {
        let lines = report
            .iter()
            .map(|d| [d.what.clone(), d.id.clone(), d.outcome.to_owned()]);
        println!("{}", output::table(["what", "id", "outcome"], lines));
    }
    Ok(Exit::Done)
}

/// Keeps the key file at `path` when it is the right one (ZITADEL shows a key only once, so a
/// repeated bootstrap must not mint a new key each time), else asks for a new key and writes it.
async fn ensure_key_file<F>(
    path: &Path,
    is_for: impl Fn(&KeyFile) -> bool,
    create: impl FnOnce() -> F,
) -> Result<Done>
where
    F: Future<Output = Result<NewKey, tenancy_zitadel::ManagementError>>,
{
    let what = format!("key file {}", path.display());
    if path.exists() {
        let file = KeyFile::from_path(path)?;
        if is_for(&file) {
            return Ok(Done {
                what,
                id: file.key_id,
                outcome: "kept",
            });
        }
    }
    let key = create().await?;
    // Checked before it replaces anything: a key file the registry could not read is no key.
    KeyFile::from_json(&key.json).context("ZITADEL's key file")?;
    write_private(path, &key.json)?;
    Ok(Done {
        what,
        id: key.key_id,
        outcome: "created",
    })
}

/// `NAME=value` lines, for `set -a; . registry.env` and Kubernetes' `--from-env-file`; a value
/// with characters a shell would read differently is refused rather than quoted two ways.
fn env_file(vars: &[(&str, String)]) -> Result<String> {
    let mut text = String::from("# Written by `tenantctl zitadel bootstrap`.\n");
    for (name, value) in vars {
        let plain = |c: char| c.is_ascii_alphanumeric() || "@:/._-".contains(c);
        if !value.chars().all(plain) {
            bail!("{name} ({value:?}) has characters an env file cannot carry plainly");
        }
        text.push_str(&format!("{name}={value}\n"));
    }
    Ok(text)
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes a file only its owner may read, through a temporary file renamed over the old one.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
}
