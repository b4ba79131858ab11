//! How results are shown: tables for people, JSON for scripts; and asking before doing harm.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use clap::ValueEnum;
use comfy_table::Table;
use tenancy_core::{Operation, OrgId, Tenant, TenantKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table on a terminal, JSON otherwise.
    Auto,
    Table,
    Json,
}

impl Output {
    pub fn is_json(self) -> bool {
        match self {
            Output::Json => true,
            Output::Table => false,
            Output::Auto => !std::io::stdout().is_terminal(),
        }
    }
}

/// Prints `value` as JSON.
pub fn json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A table for people: a header, then a line per row.
pub fn table<const N: usize>(
    header: [&str; N],
    lines: impl IntoIterator<Item = [String; N]>,
) -> Table {
    let mut table = Table::new();
    table.set_header(header);
    for line in lines {
        table.add_row(line);
    }
    table
}

/// How a value names itself in JSON (`"behind"`, `"orphan_database"`): the same words in tables.
pub fn label(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn opt(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

pub fn tenants(tenants: &[Tenant], json: bool) -> Result<()> {
    if json {
        return self::json(&tenants);
    }
    let lines = tenants.iter().map(|t| {
        [
            t.org_id.to_string(),
            t.name.to_string(),
            t.db_name.to_string(),
            opt(t.server_id.as_ref()),
            t.tier.to_string(),
            t.status.to_string(),
            opt(t.schema_version),
        ]
    });
    let header = [
        "org_id", "name", "database", "server", "tier", "status", "version",
    ];
    println!("{}", table(header, lines));
    Ok(())
}

/// Agencies with their clients beneath them (`tenants list --tree`); clients whose agency is
/// not in the list come last, under their agency's id.
pub fn tenant_tree(tenants: &[Tenant], json: bool) -> Result<()> {
    let listed: std::collections::HashSet<&OrgId> = tenants.iter().map(|t| &t.org_id).collect();
    let clients_of = |agency: &OrgId| -> Vec<&Tenant> {
        tenants
            .iter()
            .filter(|t| t.parent_org_id.as_ref() == Some(agency))
            .collect()
    };
    let roots = tenants
        .iter()
        .filter(|t| t.parent_org_id.as_ref().is_none_or(|p| !listed.contains(p)));
    if json {
        let tree: Vec<serde_json::Value> = roots
            .map(|t| {
                let mut node = serde_json::to_value(t).unwrap_or_default();
                if t.kind == TenantKind::Agency {
                    node["clients"] =
                        serde_json::to_value(clients_of(&t.org_id)).unwrap_or_default();
                }
                node
            })
            .collect();
        return self::json(&tree);
    }
    let line = |t: &Tenant, name: String| {
        [
            t.org_id.to_string(),
            name,
            t.kind.to_string(),
            t.tier.to_string(),
            t.status.to_string(),
            opt(t.server_id.as_ref()),
        ]
    };
    let mut lines = Vec::new();
    for root in roots {
        let name = match &root.parent_org_id {
            Some(agency) => format!("{} (client of {agency})", root.name),
            None => root.name.to_string(),
        };
        lines.push(line(root, name));
        if root.kind == TenantKind::Agency {
            let clients = clients_of(&root.org_id);
            for (i, client) in clients.iter().enumerate() {
                let branch = if i + 1 == clients.len() {
                    "└─"
                } else {
                    "├─"
                };
                lines.push(line(client, format!("{branch} {}", client.name)));
            }
        }
    }
    let header = ["org_id", "name", "kind", "tier", "status", "server"];
    println!("{}", table(header, lines.into_iter()));
    Ok(())
}

/// One line per operation on stderr (stdout stays for the command's result).
pub fn operations(ops: &[Operation]) {
    for op in ops {
        let error = op
            .last_error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        eprintln!(
            "operation {} {} {}: {} at step {}{error}",
            op.id, op.kind, op.org_id, op.state, op.step
        );
    }
}

/// Destructive commands ask first, unless `--yes`; without a terminal they refuse.
pub fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Pass --yes to confirm (no terminal to ask on).");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("cancelled")
    }
}
