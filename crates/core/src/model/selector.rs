//! Which tenants a listing, a fleet migration or a command is about: one selector for the
//! registry's list route, the store, fleet migrations and `tenantctl`.

use super::states::{TenantKind, TenantStatus};
use super::tenants::Tenant;
use crate::ids::{OrgId, Region, ServerId, Tier};

/// Tenants by what they are. Every condition given must hold; one left out (empty, `None`)
/// selects every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSelector {
    /// These organizations only.
    pub org_ids: Vec<OrgId>,
    /// In any of these statuses.
    pub statuses: Vec<TenantStatus>,
    pub region: Option<Region>,
    pub tier: Option<Tier>,
    pub server_id: Option<ServerId>,
    pub kind: Option<TenantKind>,
    /// An agency's clients.
    pub parent_org_id: Option<OrgId>,
}

impl TenantSelector {
    /// Whether `tenant` is selected.
    pub fn matches(&self, tenant: &Tenant) -> bool {
        (self.org_ids.is_empty() || self.org_ids.contains(&tenant.org_id))
            && (self.statuses.is_empty() || self.statuses.contains(&tenant.status))
            && self.region.as_ref().is_none_or(|r| *r == tenant.region)
            && self.tier.as_ref().is_none_or(|t| *t == tenant.tier)
            && self
                .server_id
                .as_ref()
                .is_none_or(|s| Some(s) == tenant.server_id.as_ref())
            && self.kind.is_none_or(|k| k == tenant.kind)
            && self
                .parent_org_id
                .as_ref()
                .is_none_or(|p| Some(p) == tenant.parent_org_id.as_ref())
    }

    /// An agency's clients.
    pub fn clients_of(agency: &OrgId) -> Self {
        Self {
            parent_org_id: Some(agency.clone()),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(json: serde_json::Value) -> Tenant {
        let mut base = serde_json::json!({
            "org_id": "1", "name": "A", "slug": "a", "db_name": "tenant_a", "server_id": "pg-1",
            "region": "eu", "tier": "free", "status": "active", "kind": "client",
            "parent_org_id": "9", "schema_version": 5, "created_at": "2026-12-07T00:00:00Z",
            "updated_at": "2026-12-07T00:00:00Z"
        });
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn every_condition_given_must_hold_and_none_selects_all() {
        let t = tenant(serde_json::json!({}));
        assert!(TenantSelector::default().matches(&t));
        assert!(TenantSelector::clients_of(&"9".parse().unwrap()).matches(&t));
        assert!(!TenantSelector::clients_of(&"8".parse().unwrap()).matches(&t));
        let suspended_or_failed = TenantSelector {
            statuses: vec![TenantStatus::Suspended, TenantStatus::Failed],
            ..Default::default()
        };
        assert!(!suspended_or_failed.matches(&t));
        assert!(suspended_or_failed.matches(&tenant(serde_json::json!({"status": "failed"}))));
        let elsewhere = TenantSelector {
            region: Some("eu".parse().unwrap()),
            server_id: Some("pg-2".parse().unwrap()),
            ..Default::default()
        };
        assert!(!elsewhere.matches(&t));
        assert!(!elsewhere.matches(&tenant(serde_json::json!({"server_id": null}))));
    }
}
