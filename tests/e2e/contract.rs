//! The OpenAPI document is a contract, checked by an API fuzzer that is not ours: schemathesis
//! (installed by `make test` into `.local/venv`) runs against the registry binary and fails on
//! any 5xx, any status or content type the document does not give for the route, any response
//! that breaks its schema, any schema-valid request refused as invalid and any schema-violating
//! one accepted. One run covers every phase with generated identifiers (its stateful phase
//! makes its own tenants and follows them); another aims the generated requests at a tenant
//! that exists, so that a tenant's routes are reached past their 404.

use std::path::PathBuf;
use std::process::{Command, Output};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::{Deployment, Registry, TOKEN};
use tenancy_testkit::PgCluster;

/// How long each run generates requests (`SCHEMATHESIS_MAX_TIME` to change).
const MAX_TIME_SECONDS: &str = "60";

/// What must hold (`SCHEMATHESIS_CHECKS` to change): every check schemathesis has, among them
/// no 5xx, only documented statuses and content types, responses true to their schema, every
/// schema-valid request accepted and every schema-violating one refused, and every answer
/// within 20 seconds.
const CHECKS: &str = "all";

/// A body over the size limit (`TENANCY_MAX_BODY`) is refused with 413 before it is read, so a
/// schema-violating one that is also too large is refused that way: schemathesis counts 413 as
/// a refusal here, beside the statuses it expects by default.
///
/// Registering or activating a server the registry cannot reach, or moving a tenant to one, is
/// 503 `server_unavailable` by design (documented for those three operations), and the
/// populated run has such a server: schemathesis fails every 5xx unless told, so it is told for
/// those operations only.
///
/// The stateful phase links a tenant's `server_id` to the server routes' `{id}`, and sends a
/// tenant's `null` as the text `None`, which is no server id (ids are lowercase, as the schema's
/// pattern says): the 400 that answers it is counted as a refusal of valid data. A server id the
/// schema allows is never refused with 400 (the same pattern checks it), so 400 is allowed there.
///
/// A point-in-time restore to a moment outside the tenant's restore window is 422
/// `outside_restore_window` (documented): whether a moment is inside depends on the archive's
/// state, which no schema can say, so a schema-valid moment may be refused that way for that
/// operation only.
const CONFIG: &str = "[checks.negative_data_rejection]\n\
    expected-statuses = [\"400\", \"401\", \"403\", \"404\", \"405\", \"406\", \"409\", \"413\", \
    \"415\", \"422\", \"428\", \"429\", \"5xx\"]\n\n\
    [[operations]]\n\
    include-operation-id = [\"add_server\", \"activate_server\", \"move_tenant\"]\n\
    checks.not_a_server_error.expected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"503\"]\n\n\
    [[operations]]\n\
    include-operation-id = [\"activate_server\", \"drain_server\", \"delete_server\"]\n\
    checks.positive_data_acceptance.expected-statuses = \
    [\"2xx\", \"3xx\", \"400\", \"401\", \"403\", \"404\", \"409\", \"429\", \"5xx\"]\n\n\
    [[operations]]\n\
    include-operation-id = [\"restore_tenant\"]\n\
    checks.positive_data_acceptance.expected-statuses = \
    [\"2xx\", \"3xx\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\", \"5xx\"]\n";

/// Checks that do not fit the API's documented design: a deleted tenant stays readable, with
/// status `deleted`, through its retention period (`use_after_free` expects a 404 at once).
const EXCLUDED_CHECKS: &str = "use_after_free";

/// The tenant the second run aims at, and a quota of its tier (`free`).
const ORG: &str = "281474976710655";
const QUOTA: &str = "api_calls";

fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local/venv/bin/schemathesis"),
        PathBuf::from,
    )
}

/// A registry whose long polls answer within a second, so the time goes to requests.
async fn registry(deployment: &Deployment) -> Registry {
    registry_with(deployment, &[]).await
}

async fn registry_with(deployment: &Deployment, env: &[(&str, &str)]) -> Registry {
    let mut all = vec![
        ("TENANCY_MAX_WAIT", "1s"),
        ("TENANCY_REQUEST_TIMEOUT", "20s"),
    ];
    all.extend_from_slice(env);
    deployment.start_with_env(&all).await.unwrap()
}

/// `fuzz`'s arguments for a run aimed at one tenant: every phase but the stateful one (fixed
/// parameters would override the identifiers it links), and not the tenant's deletion (the rest
/// of the run would only meet a deleted tenant).
const AIMED: &[&str] = &[
    "--phases",
    "examples,coverage,fuzzing",
    "--exclude-operation-id",
    "delete_tenant",
];

/// Runs schemathesis against the registry's document with `args` added, in a directory of its
/// own holding its reports and `config` as its `schemathesis.toml`, for `max_time` seconds
/// unless `SCHEMATHESIS_MAX_TIME` says otherwise, and fails the test on anything it finds.
async fn fuzz(
    deployment: &Deployment,
    registry: &Registry,
    config: &str,
    max_time: &str,
    args: &[&str],
) {
    let reports = tempfile::tempdir().unwrap();
    std::fs::write(reports.path().join("schemathesis.toml"), config).unwrap();
    let program = schemathesis();
    assert!(
        program.is_file(),
        "{} not found: `make test` installs schemathesis into .local/venv \
         (or set SCHEMATHESIS to its path)",
        program.display()
    );
    let max_time = std::env::var("SCHEMATHESIS_MAX_TIME").unwrap_or_else(|_| max_time.into());
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261123".into());
    let checks = std::env::var("SCHEMATHESIS_CHECKS").unwrap_or_else(|_| CHECKS.into());
    let schema = format!("{}/openapi.json", registry.base);
    let dir = reports.path().to_owned();
    let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
    let output: Output = tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .arg("run")
            .arg(&schema)
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args(["--checks", &checks, "--exclude-checks", EXCLUDED_CHECKS])
            .args(["--max-response-time", "20"])
            .args(["--max-time", &max_time, "--seed", &seed])
            // One worker: CPython 3.11 builds ASTs thread-unsafely (cpython#106905), and
            // hypothesis parses lambdas' sources while it generates.
            .args(["--workers", "1"])
            .args(["--request-timeout", "25"])
            .args(["--output-truncate", "false"])
            .args(&args)
            .arg("--report-dir")
            .arg(&dir)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .output()
            .expect("running schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}\n--- registry log (tail) ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        tail(&deployment.log(), 40)
    );
    println!("{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_fuzzer_finds_the_registry_true_to_its_openapi_document() {
    let deployment = Deployment::new().unwrap();
    let registry = registry(&deployment).await;
    fuzz(&deployment, &registry, CONFIG, MAX_TIME_SECONDS, &[]).await;
}

/// Onboards a tenant through the API and waits until it is active.
async fn onboard(registry: &Registry, body: serde_json::Value) {
    let org = body["org_id"].as_str().unwrap().to_owned();
    let created = registry
        .call(Method::POST, "/v1/tenants?wait=1s", Some(body))
        .await;
    assert!(
        [StatusCode::CREATED, StatusCode::ACCEPTED].contains(&created.status),
        "{created:?}"
    );
    registry
        .wait_for(&format!("/v1/tenants/{org}"), "status", "active")
        .await;
}

/// Every generated request names the same active tenant (and a quota of its tier), so its
/// settings, usage, quotas, suspension, credentials and moves are exercised for real (see
/// [`AIMED`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_fuzzer_finds_an_existing_tenants_routes_true_to_the_document() {
    let deployment = Deployment::new().unwrap();
    let registry = registry(&deployment).await;
    onboard(
        &registry,
        json!({"org_id": ORG, "name": "Fuzzed Corp", "tier": "free"}),
    )
    .await;
    let config = format!("[parameters]\norg_id = \"{ORG}\"\nresource = \"{QUOTA}\"\n\n{CONFIG}");
    fuzz(&deployment, &registry, &config, MAX_TIME_SECONDS, AIMED).await;
}

/// A registry in service holds more than fresh tenants: agencies with clients, an agency
/// suspended with its clients, a tenant made read-only by its storage quota, a tenant on a
/// second server whose move is retrying its last step, a deleted tenant, a server added
/// through the API and drained, and one that could not be reached. The fuzzer runs free first,
/// then is aimed at each tenant in turn (and at one of those servers), so the routes answer
/// every one of those states as the document says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_fuzzer_finds_a_populated_registry_true_to_the_document() {
    let fleet = Deployment::fleet()
        .server("pg-1", "local")
        .server("pg-2", "local")
        .build()
        .unwrap();
    let deployment = Deployment::on(fleet);
    let extra = PgCluster::start().unwrap();
    let registry = registry_with(
        &deployment,
        &[
            ("TENANCY_SERVER_PASSWORD_PG_EXTRA", extra.admin_password()),
            ("TENANCY_SERVER_PASSWORD_PG_DOWN", extra.admin_password()),
        ],
    )
    .await;
    let sql = |statement: &str| {
        deployment
            .fleet
            .cluster("pg-1")
            .psql("tenancy_registry", statement)
            .unwrap()
    };

    let (agency, client, cascaded, read_only, moved, deleted) = (
        "282000000000001",
        "282000000000011",
        "282000000000022",
        "282000000000003",
        "282000000000004",
        "282000000000005",
    );
    for body in [
        json!({"org_id": agency, "name": "Agency One", "kind": "agency"}),
        json!({"org_id": "282000000000002", "name": "Agency Two", "kind": "agency"}),
        json!({"org_id": client, "name": "Client One", "parent_org_id": agency}),
        json!({"org_id": cascaded, "name": "Client Two", "parent_org_id": "282000000000002"}),
        json!({"org_id": read_only, "name": "Full Disk", "tier": "free"}),
        json!({"org_id": moved, "name": "Moved Corp", "tier": "free"}),
        json!({"org_id": deleted, "name": "Gone Corp", "tier": "free"}),
    ] {
        onboard(&registry, body).await;
    }

    // The second agency suspended: its client is suspended by the cascade.
    let suspended = registry
        .call(Method::POST, "/v1/tenants/282000000000002/suspend", None)
        .await;
    assert_eq!(suspended.status, StatusCode::ACCEPTED, "{suspended:?}");
    registry
        .wait_for(&format!("/v1/tenants/{cascaded}"), "status", "suspended")
        .await;

    // Read-only, as the sampler leaves a tenant over its storage quota.
    sql(&format!(
        "UPDATE tenants SET read_only = true, read_only_reason = 'storage quota exceeded' \
         WHERE org_id = '{read_only}'"
    ));

    // Moved to the other server; then its move made to retry its last step, later.
    let before = registry
        .call(Method::GET, &format!("/v1/tenants/{moved}"), None)
        .await;
    let target = if before.body["server_id"] == "pg-1" {
        "pg-2"
    } else {
        "pg-1"
    };
    let started = registry
        .call(
            Method::POST,
            &format!("/v1/tenants/{moved}/move"),
            Some(json!({"server_id": target, "mode": "offline"})),
        )
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{started:?}");
    let operation = started.body["id"].as_str().unwrap().to_owned();
    registry
        .wait_for(&format!("/v1/operations/{operation}"), "state", "succeeded")
        .await;
    sql(&format!(
        "UPDATE operations SET state = 'queued', step = 'retire_source', attempts = 3, \
             last_error = 'server_unavailable: the source did not answer', \
             run_after = now() + interval '1 day', finished_at = NULL \
         WHERE id = '{operation}'; \
         UPDATE tenant_moves SET retained_db_name = NULL, retained_until = NULL \
         WHERE operation_id = '{operation}'"
    ));

    let gone = registry
        .call(Method::DELETE, &format!("/v1/tenants/{deleted}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::ACCEPTED, "{gone:?}");
    registry
        .wait_for(&format!("/v1/tenants/{deleted}"), "status", "deleted")
        .await;

    // A server added through the API, then drained.
    let added = registry
        .call(
            Method::POST,
            "/v1/servers",
            Some(
                json!({"id": "pg-extra", "region": "local", "host": "127.0.0.1",
                        "port": extra.port(), "admin_user": "postgres",
                        "password_env": "TENANCY_SERVER_PASSWORD_PG_EXTRA", "capacity": 10}),
            ),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{added:?}");
    let drained = registry
        .call(Method::POST, "/v1/servers/pg-extra/drain", None)
        .await;
    assert_eq!(drained.status, StatusCode::OK, "{drained:?}");
    // And one that cannot be reached: registered disabled, never prepared.
    let down = registry
        .call(
            Method::POST,
            "/v1/servers",
            Some(
                json!({"id": "pg-down", "region": "local", "host": "127.0.0.1", "port": 1,
                        "admin_user": "postgres",
                        "password_env": "TENANCY_SERVER_PASSWORD_PG_DOWN", "capacity": 10}),
            ),
        )
        .await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{down:?}");

    // Every phase with made-up identifiers, stateful links included, which reach the tenants
    // above through the lists.
    fuzz(&deployment, &registry, CONFIG, "30", &[]).await;

    for (org, server) in [
        (agency, "pg-extra"),
        (client, "pg-down"),
        (cascaded, "pg-extra"),
        (read_only, "pg-down"),
        (moved, "pg-extra"),
        (deleted, "pg-down"),
    ] {
        let config = format!(
            "[parameters]\norg_id = \"{org}\"\nresource = \"{QUOTA}\"\n\n\
             [[operations]]\ninclude-path-regex = \"^/v1/servers/\"\n\
             parameters = {{ id = \"{server}\" }}\n\n\
             [[operations]]\ninclude-path-regex = \"^/v1/operations/\"\n\
             parameters = {{ id = \"{operation}\" }}\n\n{CONFIG}"
        );
        fuzz(&deployment, &registry, &config, "15", AIMED).await;
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
