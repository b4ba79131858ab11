//! Deployment: `tenantctl zitadel bootstrap` against the ZITADEL stand-in, and the registry run on
//! what it wrote.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tenancy_e2e::{Deployment, binary, free_port};
use tenancy_testkit::{PLATFORM_ORG_ID, TokenClaims, ZITADEL_PAT as PAT, ZitadelStandIn};

/// `NAME=value` lines of an env file, comments skipped.
fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once('=').expect("NAME=value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// Runs the bootstrap off the runtime, which serves the stand-in meanwhile.
async fn bootstrap(zitadel: &ZitadelStandIn, dir: &Path) -> Output {
    let mut command = Command::new(binary("tenantctl"));
    command
        .args(["--output", "json", "zitadel", "bootstrap", "--issuer"])
        .arg(&zitadel.issuer)
        .arg("--pat-file")
        .arg(dir.join("admin.pat"))
        .arg("--out")
        .arg(dir.join("zitadel"))
        .args(["--platform-admin", "zitadel-admin"]);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The report's outcome for each thing done.
fn outcomes(output: &Output) -> BTreeMap<String, String> {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    report
        .iter()
        .map(|d| {
            let what = d["what"].as_str().unwrap();
            // File names without the temporary directory.
            let what = what.rsplit('/').next().unwrap_or(what);
            (what.to_owned(), d["outcome"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn zitadel_bootstrap_sets_up_an_instance_once_and_the_registry_runs_on_what_it_wrote() {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let admin = zitadel.add_human(PLATFORM_ORG_ID, "zitadel-admin");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.pat"), format!("{PAT}\n")).unwrap();
    let out = dir.path().join("zitadel");

    let first = outcomes(&bootstrap(&zitadel, dir.path()).await);
    for (what, outcome) in [
        ("project tenancy (role assertion on)", "created"),
        ("role platform_admin", "created"),
        ("role tenant_router", "created"),
        (
            "API application tenancy-registry (private-key JWT)",
            "created",
        ),
        ("api-application.json", "created"),
        ("service account tenancy-registry", "created"),
        (
            "instance manager IAM_ORG_MANAGER of tenancy-registry",
            "created",
        ),
        ("service-account.json", "created"),
        ("machine user tenancy-router", "created"),
        ("router.env", "created"),
        ("registry.env", "written"),
    ] {
        assert_eq!(
            first.get(what).map(String::as_str),
            Some(outcome),
            "{what}: {first:?}"
        );
    }
    let projects = zitadel.projects();
    assert_eq!(projects.len(), 1);
    let project = &projects[0];
    assert_eq!(project.org_id, PLATFORM_ORG_ID);
    assert!(project.role_assertion);
    assert_eq!(
        project.roles,
        ["platform_admin", "tenant_admin", "tenant_router"]
    );
    assert_eq!(project.apps.len(), 1);
    let users = zitadel.users();
    let user = |name: &str| users.iter().find(|u| u.email == name).unwrap().clone();
    let (registry_user, router_user) = (user("tenancy-registry"), user("tenancy-router"));
    assert!(registry_user.machine && router_user.machine);
    assert_eq!(
        zitadel.instance_roles(&registry_user.id),
        ["IAM_ORG_MANAGER"]
    );
    assert!(zitadel.instance_roles(&router_user.id).is_empty());
    assert_eq!(router_user.roles, ["tenant_router"]);
    assert_eq!(user("zitadel-admin").roles, ["platform_admin"]);
    assert_eq!(user("zitadel-admin").id, admin);

    let files = [
        "registry.env",
        "router.env",
        "service-account.json",
        "api-application.json",
    ];
    let contents: Vec<Vec<u8>> = files
        .iter()
        .map(|f| {
            let path = out.join(f);
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f} is for its owner only");
            std::fs::read(&path).unwrap()
        })
        .collect();
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // Again: everything is found, no key or token is minted, no file changes.
    let calls_before = zitadel.management_calls().len();
    let again = outcomes(&bootstrap(&zitadel, dir.path()).await);
    assert!(
        again.values().all(|o| o != "created"),
        "a second run creates nothing: {again:?}"
    );
    let minted: Vec<String> = zitadel.management_calls()[calls_before..]
        .iter()
        .filter(|c| c.ends_with("/keys") || c.ends_with("/pats"))
        .cloned()
        .collect();
    assert!(minted.is_empty(), "no new key or token: {minted:?}");
    for (file, before) in files.iter().zip(&contents) {
        assert_eq!(&std::fs::read(out.join(file)).unwrap(), before, "{file}");
    }
    assert_eq!(zitadel.projects().len(), 1);

    // The registry runs on registry.env and the key files alone (no development token).
    let settings = env_file(&out.join("registry.env"));
    let deployment = Deployment::new().unwrap();
    let port = free_port().unwrap();
    let mut command = deployment
        .fleet
        .command(binary("tenancy-registry"))
        .unwrap();
    command
        .envs(&settings)
        .env("TENANCY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANCY_LOG_FORMAT", "json");
    let registry = deployment
        .start_command(command, port)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", deployment.log()));

    let project_id = &settings["TENANCY_ZITADEL_PROJECT_ID"];
    assert_eq!(project_id, &project.id);
    let mut claims = TokenClaims::platform("263014839179100001", "platform_admin");
    claims.project = project_id.clone();
    claims.audience = vec![project_id.clone()];
    let operator = zitadel.jwt(&claims);
    let listed = registry
        .call_as(Some(&operator), Method::GET, "/v1/tenants", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);

    // The service account's key works: the sync lists organizations through a JWT-profile token.
    let grants = zitadel.token_grants();
    let synced = registry
        .call_as(Some(&operator), Method::POST, "/v1/zitadel/sync", None)
        .await;
    assert_eq!(synced.status, StatusCode::OK, "{:?}", synced.body);
    assert!(
        zitadel.token_grants() > grants,
        "the registry got its own token"
    );

    // The router services' token is introspected (with the API application's key) as a
    // tenant_router of the platform: connection info of an unknown tenant is a 404, not a 401/403.
    let router = env_file(&out.join("router.env"));
    assert_eq!(&router["ZITADEL_PROJECT_ID"], project_id);
    let unknown = "/v1/tenants/263014839179199999/connection";
    let answer = registry
        .call_as(Some(&router["REGISTRY_TOKEN"]), Method::GET, unknown, None)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{:?}", answer.body);
    let forged = registry
        .call_as(
            Some("pat-0000000000000000000000000000dead"),
            Method::GET,
            unknown,
            None,
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
}
