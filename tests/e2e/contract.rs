//! The OpenAPI document is a contract, checked by an API fuzzer that is not ours: schemathesis
//! (installed by `make test` into `.local/venv`) runs against the registry binary for about a
//! minute and fails on any 5xx, any status or content type the document does not give for the
//! route, any response that breaks its schema, any schema-valid request refused as invalid and
//! any schema-violating one accepted.

use std::path::PathBuf;
use std::process::Command;

use tenancy_e2e::{Deployment, TOKEN};

/// How long schemathesis generates requests (`SCHEMATHESIS_MAX_TIME` to change).
const MAX_TIME_SECONDS: &str = "60";

/// What must hold (`SCHEMATHESIS_CHECKS` to change): every check schemathesis has, among them
/// no 5xx, only documented statuses and content types, responses true to their schema, every
/// schema-valid request accepted and every schema-violating one refused, and every answer
/// within 20 seconds.
const CHECKS: &str = "all";

/// Checks that do not fit the API's documented design: a deleted tenant stays readable, with
/// status `deleted`, through its retention period (`use_after_free` expects a 404 at once).
const EXCLUDED_CHECKS: &str = "use_after_free";

fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.local/venv/bin/schemathesis"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_fuzzer_finds_the_registry_true_to_its_openapi_document() {
    let program = schemathesis();
    assert!(
        program.is_file(),
        "{} not found: `make test` installs schemathesis into .local/venv \
         (or set SCHEMATHESIS to its path)",
        program.display()
    );
    let deployment = Deployment::new().unwrap();
    // Long polls answer within a second, so the time goes to requests, not waiting.
    let registry = deployment
        .start_with_env(&[
            ("TENANCY_MAX_WAIT", "1s"),
            ("TENANCY_REQUEST_TIMEOUT", "20s"),
        ])
        .await
        .unwrap();
    let reports = tempfile::tempdir().unwrap();
    let max_time =
        std::env::var("SCHEMATHESIS_MAX_TIME").unwrap_or_else(|_| MAX_TIME_SECONDS.into());
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261123".into());
    let checks = std::env::var("SCHEMATHESIS_CHECKS").unwrap_or_else(|_| CHECKS.into());
    let schema = format!("{}/openapi.json", registry.base);
    let report_dir = reports.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
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
            .arg("--report-dir")
            .arg(&report_dir)
            .current_dir(&report_dir)
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
