//! One module per command: its arguments (with `--help` text and examples) and its `run`.

pub mod backups;
pub mod migrate;
pub mod moves;
pub mod psql;
pub mod reconcile;
pub mod rekey;
pub mod select;
pub mod servers;
pub mod status;
pub mod tenants;
pub mod tiers;
pub mod zitadel;
