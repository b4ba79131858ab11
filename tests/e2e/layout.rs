use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The crate graph points one way: `core` <- `pgtls` <- `router`, `control`; `core` <-
/// `zitadel`; `control` <- `registry`, `tenantctl` (which also uses `zitadel`, for its bootstrap). The router stays lean (no `control`, no sqlx; axum only behind its feature).
#[test]
fn the_crate_graph_points_one_way() {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    // Normal (non-dev) dependencies of each workspace crate: (name, optional).
    let mut graph: BTreeMap<String, BTreeSet<(String, bool)>> = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let deps = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_owned(),
                    d["optional"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        graph.insert(package["name"].as_str().unwrap().to_owned(), deps);
    }
    // The test kit (and the typed client it onboards through) are dependencies only behind the
    // registry's `testing` feature (optional).
    let ours = |name: &str| -> BTreeSet<String> {
        graph[name]
            .iter()
            .filter(|(d, optional)| {
                d.starts_with("tenancy-")
                    && !(*optional && (d == "tenancy-testkit" || d == "tenancy-client"))
            })
            .map(|(d, _)| d.clone())
            .collect()
    };
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert!(ours("tenancy-core").is_empty());
    assert_eq!(ours("tenancy-pgtls"), set(&["tenancy-core"]));
    assert_eq!(ours("tenancy-client"), set(&["tenancy-core"]));
    assert_eq!(
        ours("tenancy-control"),
        set(&["tenancy-core", "tenancy-pgtls"])
    );
    assert_eq!(ours("tenancy-zitadel"), set(&["tenancy-core"]));
    assert_eq!(
        ours("tenancy-router"),
        set(&["tenancy-core", "tenancy-pgtls", "tenancy-zitadel"])
    );
    assert_eq!(
        ours("tenancy-registry"),
        set(&["tenancy-control", "tenancy-core", "tenancy-zitadel"])
    );
    assert_eq!(
        ours("tenantctl"),
        set(&["tenancy-control", "tenancy-core", "tenancy-zitadel"])
    );
    for (dep, optional) in &graph["tenancy-router"] {
        assert_ne!(dep, "sqlx", "the router never depends on sqlx");
        if dep == "axum" || dep == "tenancy-zitadel" {
            assert!(optional, "{dep} only behind the router's axum feature");
        }
    }
    assert!(
        graph["tenancy-registry"].iter().all(|(d, _)| d != "sqlx"),
        "the registry works through the engine, never sqlx"
    );
    // Benchmarks and examples never depend on the test suite.
    for (name, deps) in &graph {
        assert!(
            deps.iter().all(|(d, _)| d != "tenancy-e2e"),
            "{name} depends on the end-to-end test suite"
        );
    }
}
