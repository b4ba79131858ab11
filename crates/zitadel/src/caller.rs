//! The verified caller every service works with: who called, from which organization, holding
//! which project roles in which organizations.

use std::collections::{BTreeMap, BTreeSet};

use tenancy_core::OrgId;

/// Project role keys the control plane understands.
pub mod roles {
    /// Everything, on every tenant. Granted in the platform's own organization.
    pub const PLATFORM_ADMIN: &str = "platform_admin";
    /// Reads its own organization's tenant.
    pub const TENANT_ADMIN: &str = "tenant_admin";
    /// A product service that runs the router: reads connection info and the change feed.
    /// Granted in the platform's own organization.
    pub const TENANT_ROUTER: &str = "tenant_router";
    /// Roles that count only when granted in the platform organization.
    pub const PLATFORM_ROLES: [&str; 2] = [PLATFORM_ADMIN, TENANT_ROUTER];
}

/// A caller whose token was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's subject (a ZITADEL user id, or `dev` for the development token).
    pub subject: String,
    /// The caller's own organization (`urn:zitadel:iam:user:resourceowner:id`).
    pub org_id: Option<OrgId>,
    /// Role key -> organizations in which the caller holds it (platform roles: the platform
    /// organization only, as verification keeps them).
    pub roles: BTreeMap<String, BTreeSet<OrgId>>,
}

impl Caller {
    /// Whether the caller holds `role` in any organization.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.get(role).is_some_and(|orgs| !orgs.is_empty())
    }

    /// Whether the caller holds `role` in organization `org`.
    pub fn has_role_in(&self, role: &str, org: &OrgId) -> bool {
        self.roles.get(role).is_some_and(|orgs| orgs.contains(org))
    }

    pub fn is_platform_admin(&self) -> bool {
        self.has_role(roles::PLATFORM_ADMIN)
    }

    /// Platform admins read every tenant; tenant admins their own organization's.
    pub fn can_read_tenant(&self, org: &OrgId) -> bool {
        self.is_platform_admin() || self.has_role_in(roles::TENANT_ADMIN, org)
    }

    /// A router service (`tenant_router`): the only caller given tenants' connection passwords.
    pub fn is_router_service(&self) -> bool {
        self.has_role(roles::TENANT_ROUTER)
    }

    /// The change feed, settings in plain text and quota reads: router services and platform
    /// admins.
    pub fn can_route(&self) -> bool {
        self.is_platform_admin() || self.has_role(roles::TENANT_ROUTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_admin_reads_only_its_own_organization() {
        let acme: OrgId = "1".parse().unwrap();
        let other: OrgId = "2".parse().unwrap();
        let caller = Caller {
            subject: "u".into(),
            org_id: Some(acme.clone()),
            roles: BTreeMap::from([(
                roles::TENANT_ADMIN.to_owned(),
                BTreeSet::from([acme.clone()]),
            )]),
        };
        assert!(caller.can_read_tenant(&acme));
        assert!(!caller.can_read_tenant(&other));
        assert!(!caller.is_platform_admin());
        assert!(!caller.can_route());
    }
}
