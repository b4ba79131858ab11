//! Scheduled backups on two registry processes racing the scheduler: every tenant is backed up
//! once per interval (never twice), retention deletes what is past `keep` (object, then row,
//! audited), and the gauges say how far behind each tier is.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::Deployment;
use tenancy_testkit::eventually;

/// The default tiers, with `free` backed up every 2 s and keeping 2.
fn config(deployment: &Deployment) -> std::path::PathBuf {
    let tiers = include_str!("../../crates/control/src/config/default-tiers.toml").replace(
        "[tiers.free.backups]\ninterval = \"24h\"\nkeep = 7\n",
        "[tiers.free.backups]\ninterval = \"2s\"\nkeep = 2\n",
    );
    assert!(tiers.contains("interval = \"2s\""));
    let fleet = deployment
        .fleet
        .toml()
        .replace("\n[backups]\n", "\n[backups]\nschedule_every = \"200ms\"\n");
    let path = deployment.fleet.dir().join("scheduled.toml");
    std::fs::write(&path, format!("{fleet}\n{tiers}")).unwrap();
    path
}

#[tokio::test]
async fn two_replicas_take_each_scheduled_backup_once_and_retention_keeps_the_newest() {
    let deployment = Deployment::new().unwrap();
    let file = config(&deployment);
    let env = [("TENANCY_CONFIG", file.to_str().unwrap())];
    let replicas = [
        deployment.start_with_env(&env).await.unwrap(),
        deployment.start_with_env(&env).await.unwrap(),
    ];
    let orgs = ["7001", "7002", "7003"];
    for org in orgs {
        let created = replicas[0]
            .call(
                Method::POST,
                "/v1/tenants?wait=30s",
                Some(json!({"org_id": org, "name": format!("Scheduled {org}"), "tier": "free"})),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    }

    // Until every tenant has had a backup expire: 3 scheduled backups at least, 2 kept.
    let sql = |query: &str| {
        deployment
            .fleet
            .cluster("pg-1")
            .psql("tenancy_registry", query)
            .unwrap()
    };
    eventually(Duration::from_secs(90), "backups expire", || async {
        let expired = sql(
            "SELECT count(DISTINCT org_id) FROM audit_events WHERE action = 'tenant.backup_expired'",
        );
        (expired == "3").then_some(())
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", replicas[0].base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scheduler_here = metrics.contains("tenancy_backups_expired_total");
    drop(replicas);

    // Never two scheduled backups of a tenant within one interval of each other: those kept
    // and those retention deleted (their audit events say when they were taken).
    let taken = sql(
        "SELECT string_agg(org_id || '=' || extract(epoch FROM at)::text, ',' ORDER BY org_id, at)
         FROM (SELECT org_id, created_at AS at FROM backups WHERE kind = 'scheduled'
               UNION ALL
               SELECT org_id, (after->>'created_at')::timestamptz FROM audit_events
               WHERE action = 'tenant.backup_expired') taken",
    );
    let mut by_org: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for entry in taken.split(',') {
        let (org, at) = entry.split_once('=').unwrap();
        by_org.entry(org).or_default().push(at.parse().unwrap());
    }
    assert_eq!(by_org.len(), 3, "{taken}");
    for (org, times) in &by_org {
        assert!(times.len() >= 3, "tenant {org}: {times:?}");
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= 2.0,
                "tenant {org}: two scheduled backups {:.3} s apart",
                pair[1] - pair[0]
            );
        }
    }
    // Retention kept the newest completed ones of each tenant, and each object has its row.
    for org in orgs {
        let rows: usize = sql(&format!(
            "SELECT count(*) FROM backups WHERE org_id = '{org}' AND state = 'completed'"
        ))
        .parse()
        .unwrap();
        assert!(
            (1..=3).contains(&rows),
            "tenant {org} keeps {rows} completed backups"
        );
        let objects = std::fs::read_dir(deployment.fleet.dir().join("backups/tenants").join(org))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".age")
            })
            .count();
        let recorded: usize = sql(&format!(
            "SELECT count(*) FROM backups WHERE org_id = '{org}' AND state <> 'failed'"
        ))
        .parse()
        .unwrap();
        assert!(
            objects <= recorded,
            "tenant {org}: {objects} objects, {recorded} rows"
        );
    }
    // The gauges, on whichever replica held the schedule at the end.
    if scheduler_here {
        assert!(
            metrics.contains("tenancy_tenants_past_backup_interval{tier=\"free\"}"),
            "{metrics}"
        );
    }
}
