//! Which tenants a command is about: the flags every command that selects tenants shares, read
//! into the one selector the engine takes.

use tenancy_core::{OrgId, Region, ServerId, TenantKind, TenantSelector, TenantStatus, Tier};

/// Tenants by what they are; every flag given must hold.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Select {
    /// Only these organizations (repeatable).
    #[arg(long = "org")]
    org_ids: Vec<OrgId>,
    /// In any of these statuses (repeatable).
    #[arg(long)]
    status: Vec<TenantStatus>,
    #[arg(long)]
    region: Option<Region>,
    #[arg(long)]
    server: Option<ServerId>,
    #[arg(long)]
    tier: Option<Tier>,
    /// standalone, agency or client.
    #[arg(long)]
    kind: Option<TenantKind>,
    /// This agency's clients only.
    #[arg(long)]
    agency: Option<OrgId>,
}

impl From<Select> for TenantSelector {
    fn from(select: Select) -> Self {
        TenantSelector {
            org_ids: select.org_ids,
            statuses: select.status,
            region: select.region,
            tier: select.tier,
            server_id: select.server,
            kind: select.kind,
            parent_org_id: select.agency,
        }
    }
}
