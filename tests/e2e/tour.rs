//! The README's quick tour and the walkthroughs of `docs/`, run as a newcomer would: every `$ `
//! command of their console blocks, in one shell, after `make run`'s environment
//! (`.local/registry.env`) is in place, against the real registry binary and the real
//! `tenantctl`. Each command's output must have the shape the page shows: the same JSON fields
//! (and the same values where they do not vary from run to run), the same table headers, the same
//! lines with ids and numbers masked. So the pages cannot drift from what the code does.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tenancy_e2e::{Deployment, TOKEN, binary};
use tenancy_testkit::TestFleet;

/// One command of the tour and the output the README shows for it.
#[derive(Debug)]
struct Step {
    command: String,
    shown: Vec<String>,
}

/// A page of the repository, by its path from the root.
fn page(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap()
}

/// The README's quick tour.
fn quick_tour(readme: &str) -> &str {
    readme
        .split("\n## Quick tour\n")
        .nth(1)
        .expect("a quick tour")
        .split("\n## ")
        .next()
        .unwrap()
}

/// The `$ ` commands of the console blocks of `section`, with what each shows.
fn tour(section: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_console = false;
    let mut continued = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
            continue;
        }
        if !in_console {
            continue;
        }
        if continued {
            let step = steps.last_mut().unwrap();
            step.command.push('\n');
            step.command.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                command: command.to_owned(),
                shown: Vec::new(),
            });
            continued = command.ends_with('\\');
        } else if let Some(step) = steps.last_mut()
            && !line.trim().is_empty()
        {
            step.shown.push(line.to_owned());
        }
    }
    steps
}

/// Masks what varies from run to run: ids (UUIDs) and numbers.
fn masked(line: &str) -> String {
    let is_uuid = |w: &[u8]| {
        w.len() == 36
            && w.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if i + 36 <= bytes.len() && is_uuid(&bytes[i..i + 36]) {
            out.push_str("<uuid>");
            i += 36;
        } else if bytes[i].is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            out.push('0');
        } else {
            let c = line[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Fields whose values the tour shows as they will be on any run.
const STABLE: &[&str] = &[
    "org_id",
    "name",
    "slug",
    "db_name",
    "region",
    "tier",
    "status",
    "kind",
    "code",
    "state",
    "step",
    "user",
    "dbname",
    "read_only",
    "title",
    "type",
];

fn same_json(shown: &Value, got: &Value, path: &str) -> Result<(), String> {
    match (shown, got) {
        (Value::Object(a), Value::Object(b)) => {
            let keys = |o: &serde_json::Map<String, Value>| {
                o.keys().cloned().collect::<std::collections::BTreeSet<_>>()
            };
            if keys(a) != keys(b) {
                return Err(format!("{path}: fields {:?}, got {:?}", keys(a), keys(b)));
            }
            for (key, value) in a {
                let at = format!("{path}.{key}");
                match (value, &b[key]) {
                    (Value::Object(_) | Value::Array(_), other) => same_json(value, other, &at)?,
                    (value, other) if STABLE.contains(&key.as_str()) && value != other => {
                        return Err(format!("{at}: shown {value}, got {other}"));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => match (a.first(), b.first()) {
            (Some(x), Some(y)) => same_json(x, y, &format!("{path}[0]")),
            (None, None) => Ok(()),
            _ => Err(format!("{path}: shown {} items, got {}", a.len(), b.len())),
        },
        (a, b) if std::mem::discriminant(a) == std::mem::discriminant(b) => Ok(()),
        (a, b) => Err(format!("{path}: shown {a}, got {b}")),
    }
}

/// Whether `got` has the shape `shown` shows; why not otherwise.
fn check(step: &Step, got: &[String]) -> Result<(), String> {
    let shown: Vec<&String> = step.shown.iter().filter(|l| !l.starts_with("# ")).collect();
    let open_ended = shown.last().is_some_and(|l| l.trim() == "...");
    let shown: Vec<&String> = shown.into_iter().filter(|l| l.trim() != "...").collect();
    let got: Vec<&String> = got.iter().filter(|l| !l.trim().is_empty()).collect();
    // Metrics come in the exporter's order, with values of the moment: each series shown is
    // there.
    if shown.iter().all(|l| l.starts_with("tenancy_")) && !shown.is_empty() {
        for line in &shown {
            let (series, _) = line.rsplit_once(' ').unwrap_or((line, ""));
            if !got.iter().any(|g| g.starts_with(&format!("{series} "))) {
                return Err(format!("no {series} in {got:#?}"));
            }
        }
        return Ok(());
    }
    if got.len() < shown.len() || (!open_ended && got.len() != shown.len()) {
        return Err(format!("shown {shown:#?}\ngot {got:#?}"));
    }
    for (shown, got) in shown.iter().zip(&got) {
        if shown.starts_with('{') {
            let a: Value = serde_json::from_str(shown).map_err(|e| format!("{shown}: {e}"))?;
            let b: Value = serde_json::from_str(got).map_err(|e| format!("{got}: {e}"))?;
            same_json(&a, &b, "")?;
        } else if shown.starts_with('+') {
            // A table's border: its width follows the values.
        } else if shown.starts_with('|') {
            let cells = |l: &str| l.split('|').count();
            if cells(shown) != cells(got) {
                return Err(format!("shown {shown}\ngot   {got}"));
            }
            let header = |l: &str| l.split('|').map(|c| masked(c.trim())).collect::<Vec<_>>();
            if (shown.contains("org_id") || shown.contains(" target "))
                && header(shown) != header(got)
            {
                return Err(format!("shown {shown}\ngot   {got}"));
            }
        } else if masked(shown) != masked(got) {
            return Err(format!("shown {shown}\ngot   {got}"));
        }
    }
    Ok(())
}

fn workdir(deployment: &Deployment, base: &str, config: Option<&Path>) -> PathBuf {
    let dir = deployment.fleet.dir().join("tour");
    std::fs::create_dir_all(dir.join(".local")).unwrap();
    // `make run` keeps backups in `.local/backups`; the fleet keeps them in its directory.
    let backups = deployment.fleet.dir().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    std::os::unix::fs::symlink(&backups, dir.join(".local/backups")).unwrap();
    let bin = binary("tenantctl");
    let bin_dir = bin.parent().unwrap();
    // What `make run` writes (deploy/local/run.sh), for this deployment.
    std::fs::write(
        dir.join(".local/registry.env"),
        format!(
            "export REGISTRY_URL={base}\nexport REGISTRY_TOKEN={TOKEN}\n\
             export PATH=\"{}:$PATH\"\n{}",
            bin_dir.display(),
            config.map_or_else(String::new, |c| format!(
                "export TENANCY_CONFIG={}\n",
                c.display()
            ))
        ),
    )
    .unwrap();
    dir
}

fn run_all(deployment: &Deployment, dir: &Path, steps: &[Step]) -> Vec<(String, Vec<String>)> {
    let mut script = String::from("exec 2>&1\n");
    for (i, step) in steps.iter().enumerate() {
        // Output without a final newline (curl's) must not swallow the marker.
        script.push_str(&format!("printf '\\n@@step {i}\\n'\n{}\n", step.command));
    }
    let output = deployment
        .fleet
        .command("bash")
        .unwrap()
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut outputs: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(i) = line.strip_prefix("@@step ") {
            let i: usize = i.parse().unwrap();
            outputs.push((steps[i].command.clone(), Vec::new()));
        } else if let Some((_, lines)) = outputs.last_mut() {
            lines.push(line.to_owned());
        }
    }
    outputs
}

/// Runs the walkthrough's commands on a fresh `make run`-like deployment, and fails on the first
/// answers that do not have the shape shown.
async fn runs_as_shown(steps: Vec<Step>) {
    runs_as_shown_on(steps, false).await;
}

/// [`runs_as_shown`], with the server's WAL archived as `make run` archives it.
async fn runs_as_shown_on(steps: Vec<Step>, archived: bool) {
    assert!(
        steps
            .first()
            .is_some_and(|s| s.command == "source .local/registry.env"),
        "a walkthrough starts from make run's environment: {steps:#?}"
    );
    let fleet = TestFleet::builder()
        .server("local-1", "local")
        .engine("poll_interval", "\"200ms\"")
        .build()
        .unwrap();
    let deployment = Deployment { fleet };
    let mut env = vec![("TENANCY_METRICS_INTERVAL", "1s".to_owned())];
    let mut config_file = None;
    if archived {
        let dir = deployment.fleet.dir();
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let config = format!(
            "{}\n[wal_archive]\nmark_every = \"1s\"\nspool_dir = \"{}\"\nscratch_dir = \"{}\"\n",
            deployment.fleet.toml().replacen(
                "capacity = 1000\n",
                "capacity = 1000\nwal_archive = {}\n",
                1
            ),
            dir.join("wal-spool").display(),
            scratch.display()
        );
        let path = dir.join("archived.toml");
        std::fs::write(&path, config).unwrap();
        env.push(("TENANCY_CONFIG", path.display().to_string()));
        config_file = Some(path);
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let registry = deployment.start_with_env(&env).await.unwrap();
    let dir = workdir(&deployment, &registry.base, config_file.as_deref());
    let outputs = run_all(&deployment, &dir, &steps);
    assert_eq!(
        outputs.len(),
        steps.len(),
        "every command ran: {outputs:#?}"
    );
    let mut wrong = Vec::new();
    for (step, (_, got)) in steps.iter().zip(&outputs) {
        if let Err(why) = check(step, got) {
            wrong.push(format!("$ {}\n{why}", step.command));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[tokio::test]
async fn the_readme_quick_tour_runs_as_shown() {
    let steps = tour(quick_tour(&page("README.md")));
    assert!(steps.len() > 10, "the tour has its commands: {steps:#?}");
    assert!(steps.iter().any(|s| s.command.starts_with("tenantctl")));
    // As `make run`: its server's WAL archived.
    runs_as_shown_on(steps, true).await;
}

#[tokio::test]
async fn the_agency_walkthrough_runs_as_shown() {
    runs_as_shown(tour(&page("docs/agencies.md"))).await;
}

#[tokio::test]
async fn the_quota_and_settings_walkthrough_runs_as_shown() {
    runs_as_shown(tour(&page("docs/tiers-and-quotas.md"))).await;
}

#[tokio::test]
async fn the_backup_walkthrough_runs_as_shown() {
    runs_as_shown(tour(&page("docs/backups.md"))).await;
}

#[tokio::test]
async fn the_point_in_time_walkthrough_runs_as_shown() {
    runs_as_shown_on(tour(&page("docs/point-in-time.md")), true).await;
}

#[test]
fn the_shape_check_sees_a_different_answer() {
    let step = Step {
        command: "curl".into(),
        shown: vec![r#"{"status":"active","code":"x"}"#.into()],
    };
    assert!(check(&step, &[r#"{"status":"active","code":"x"}"#.into()]).is_ok());
    assert!(check(&step, &[r#"{"status":"suspended","code":"x"}"#.into()]).is_err());
    assert!(check(&step, &[r#"{"status":"active"}"#.into()]).is_err());
    assert!(check(&step, &[]).is_err());
    assert_eq!(
        masked("operation 01a20ed8-07b8-75fd-9ff3-f9bac979c2c5 provision 1234: 0.5s"),
        "operation <uuid> provision 0: 0.0s"
    );
}
