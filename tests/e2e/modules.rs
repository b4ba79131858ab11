//! The module graph inside each crate points one way, the twin of `layout.rs` for crates.
//!
//! Each file's `crate::…` and `super::…` paths are edges to the module they name; a path through
//! a re-export of the crate root or of a `mod.rs` (`crate::ErrorCode`) is an edge to the module
//! that defines the item. An edge between a module and one of its ancestors is Rust's ordinary
//! façade (a `mod.rs` whose children use its types) and does not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate: `["store", "tenants"]`; the crate root is `[]`.
type Module = Vec<String>;

struct Crate {
    /// Each module and the text of its file, comments left out.
    files: BTreeMap<Module, String>,
    /// Names re-exported by a module (`pub use child::{A, B}`), and the module defining each.
    reexports: BTreeMap<(Module, String), Module>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn read_crate(name: &str) -> Crate {
    let src = workspace().join("crates").join(name).join("src");
    let mut files = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code: String = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                files.insert(module_of(&src, &path), code);
            }
        }
    }
    let mut reexports = BTreeMap::new();
    for (module, code) in &files {
        for statement in code.split(';') {
            let Some(rest) = statement.trim().strip_prefix("pub use ") else {
                continue;
            };
            let (head, names) = match rest.split_once("::{") {
                Some((head, names)) => (head, names.trim_end_matches('}').to_owned()),
                None => match rest.rsplit_once("::") {
                    Some((head, name)) => (head, name.to_owned()),
                    None => continue,
                },
            };
            let mut target = module.clone();
            for part in head.split("::") {
                if part != "self" && part != "crate" {
                    target.push(part.trim().to_owned());
                }
            }
            if !files.contains_key(&target) {
                continue;
            }
            for name in names.split(',') {
                let name = name.split(" as ").last().unwrap().trim();
                if !name.is_empty() {
                    reexports.insert((module.clone(), name.to_owned()), target.clone());
                }
            }
        }
    }
    Crate { files, reexports }
}

/// The paths a file names with `crate::` or `super::`, each as its segments from the crate
/// root (a `{…}` group gives one path per member).
fn paths(module: &Module, is_dir_module: bool, code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", {
            // `super` of `store/tenants.rs` is `store`; of `store/mod.rs`, the crate root.
            let mut parent = module.clone();
            if !is_dir_module || !module.is_empty() {
                parent.pop();
            }
            parent
        }),
    ] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let preceded = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            rest = &rest[at + prefix.len()..];
            if preceded {
                continue;
            }
            let mut segments = base.clone();
            let mut tail = rest;
            loop {
                let end = tail
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                if end == 0 {
                    break;
                }
                segments.push(tail[..end].to_owned());
                tail = &tail[end..];
                match tail.strip_prefix("::") {
                    Some(next) => tail = next,
                    None => break,
                }
            }
            if let Some(group) = tail.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for member in group.split(',') {
                    let mut path = segments.clone();
                    path.extend(
                        member
                            .split("::")
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty() && s != "self"),
                    );
                    found.push(path);
                }
            } else {
                found.push(segments);
            }
        }
    }
    found
}

/// The module a path names: its longest prefix that is a module, followed through re-exports.
fn resolve(krate: &Crate, path: &[String]) -> Module {
    let mut module: Module = Vec::new();
    for segment in path {
        let mut deeper = module.clone();
        deeper.push(segment.clone());
        if krate.files.contains_key(&deeper) {
            module = deeper;
        } else if let Some(defining) = krate.reexports.get(&(module.clone(), segment.clone())) {
            return defining.clone();
        } else {
            break;
        }
    }
    module
}

fn edges(name: &str) -> BTreeMap<Module, BTreeSet<Module>> {
    let krate = read_crate(name);
    let src = workspace().join("crates").join(name).join("src");
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, code) in &krate.files {
        let is_dir_module = src.join(module.join("/")).join("mod.rs").exists();
        for path in paths(module, is_dir_module, code) {
            let target = resolve(&krate, &path);
            let related = target.starts_with(module) || module.starts_with(&target);
            if !related {
                graph
                    .entry(module.clone())
                    .or_default()
                    .insert(target.clone());
            }
        }
    }
    graph
}

/// A cycle of the graph, if it has one.
fn cycle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn show(path: &[Module]) -> String {
    path.iter()
        .map(|m| {
            if m.is_empty() {
                "crate".to_owned()
            } else {
                m.join("::")
            }
        })
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn no_crate_has_a_module_cycle() {
    for name in [
        "core",
        "pgtls",
        "zitadel",
        "router",
        "control",
        "registry",
        "tenantctl",
        "testkit",
        "bench",
    ] {
        if let Some(cycle) = cycle(&edges(name)) {
            panic!("module cycle in {name}: {}", show(&cycle));
        }
    }
}

/// The control plane's layers: the store knows nothing above it; the engine is reached only
/// from the crate root; the worker only from the engine; the aggregates of the store import
/// nothing from each other (the transactions that span them live in `store::lifecycle`).
#[test]
fn the_control_plane_points_one_way() {
    let graph = edges("control");
    let m = |s: &str| -> Module { s.split("::").map(str::to_owned).collect() };
    let mut wrong = Vec::new();
    for (from, targets) in &graph {
        for to in targets {
            let under = |root: &str| to.starts_with(&m(root));
            let from_under = |root: &str| from.starts_with(&m(root));
            let edge = show(&[from.clone(), to.clone()]);
            if from_under("store")
                && ["engine", "worker", "operations", "reconcile"]
                    .iter()
                    .any(|r| under(r))
            {
                wrong.push(format!("{edge}: the store imports nothing above it"));
            }
            if under("engine") && !from_under("engine") {
                wrong.push(format!("{edge}: only the crate root imports the engine"));
            }
            if under("worker") && !from_under("engine") {
                wrong.push(format!("{edge}: only the engine imports the worker"));
            }
            for aggregate in ["tenants", "operations", "moves"] {
                let aggregate = m(&format!("store::{aggregate}"));
                let siblings =
                    ["tenants", "operations", "moves"].map(|a| m(&format!("store::{a}")));
                if from == &aggregate && siblings.contains(to) {
                    wrong.push(format!("{edge}: aggregates meet in store::lifecycle only"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The checker itself finds what it is meant to: a forbidden import and a cycle.
#[test]
fn the_module_checks_see_a_forbidden_import() {
    let mut graph = edges("control");
    let m = |s: &str| -> Module { s.split("::").map(str::to_owned).collect() };
    assert!(
        graph
            .get(&m("store::lifecycle"))
            .is_some_and(|t| t.contains(&m("store::tenants"))),
        "the checker reads `use super::…` edges"
    );
    assert!(cycle(&graph).is_none());
    graph
        .entry(m("store::tenants"))
        .or_default()
        .insert(m("operations"));
    graph
        .entry(m("operations"))
        .or_default()
        .insert(m("store::tenants"));
    assert!(cycle(&graph).is_some());
}
