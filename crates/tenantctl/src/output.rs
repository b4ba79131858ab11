//! How results are shown: tables for people, JSON for scripts; and asking before doing harm.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use clap::ValueEnum;
use comfy_table::Table;
use tenancy_core::{Operation, Tenant};

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
