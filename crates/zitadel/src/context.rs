//! The tenant a request acts in, as product services see it: the organization, whether it is an
//! agency or a client (and of which agency), and the caller's roles there.
//!
//! A caller acts in its own organization. A caller from an agency may act in one of that
//! agency's clients by naming it in the [`TENANT_HEADER`]; the name is checked against the
//! registry's answer for the client (its agency must be the caller's own organization, and the
//! caller must hold a project role there), never trusted as sent. Nobody else may name another
//! tenant: not a client's users (not even for a sibling), not platform admins.

use std::collections::BTreeSet;

use http::HeaderMap;
use tenancy_core::{OrgId, TenantKind, TenantPlace, TenantStatus};

use crate::Caller;

/// The header naming the client an agency's caller acts in.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// The tenant a request acts in, and who acts there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantContext {
    /// The tenant acted in.
    pub org_id: OrgId,
    pub kind: TenantKind,
    /// A client's agency.
    pub parent_org_id: Option<OrgId>,
    /// The caller's project roles there. In a client it acts in for its agency, the roles it
    /// holds in the agency.
    pub roles: BTreeSet<String>,
    /// Set when the caller acts in a client for its agency: the agency (the caller's own
    /// organization).
    pub via_agency: Option<OrgId>,
}

/// Why a request has no tenant context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("the caller's token names no organization")]
    NoOrganization,
    #[error("{TENANT_HEADER}: {0}")]
    InvalidHeader(String),
    /// The named tenant is not a client of the caller's organization (or does not exist: the
    /// answer is the same, so it tells nothing about other tenants).
    #[error("organization {target} is not a client of your organization {own}")]
    NotYourClient { target: OrgId, own: OrgId },
    #[error("acting in a client needs a project role in your agency {0}")]
    NoAgencyRole(OrgId),
    #[error("this needs one of the roles {roles} in organization {org}")]
    MissingRole { org: OrgId, roles: String },
    /// The caller's agency is suspended (or being deleted): its users act in none of its
    /// clients until it is active again.
    #[error("your agency {agency} is {status}: you cannot act in its clients")]
    AgencyNotActive {
        agency: OrgId,
        status: tenancy_core::TenantStatus,
    },
}

impl TenantContext {
    /// The organization the request names in [`TENANT_HEADER`], if any.
    pub fn requested(headers: &HeaderMap) -> Result<Option<OrgId>, ContextError> {
        let mut values = headers.get_all(TENANT_HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ContextError::InvalidHeader("given more than once".into()));
        }
        let text = value
            .to_str()
            .map_err(|_| ContextError::InvalidHeader("not visible ASCII".into()))?;
        text.parse()
            .map(Some)
            .map_err(|e: tenancy_core::IdError| ContextError::InvalidHeader(e.to_string()))
    }

    /// The organization whose registry entry decides the context: the one named, else the
    /// caller's own.
    pub fn target(caller: &Caller, requested: Option<&OrgId>) -> Result<OrgId, ContextError> {
        match requested {
            Some(org) => Ok(org.clone()),
            None => caller.org_id.clone().ok_or(ContextError::NoOrganization),
        }
    }

    /// Refuses, before anything is resolved, a caller naming another organization than its
    /// own while holding no role in its own: it could act in none, and its requests cost the
    /// registry nothing.
    pub fn precheck(caller: &Caller, requested: Option<&OrgId>) -> Result<(), ContextError> {
        let own = caller.org_id.as_ref().ok_or(ContextError::NoOrganization)?;
        match requested {
            Some(target) if target != own => {
                let has_role = caller.roles.values().any(|orgs| orgs.contains(own));
                if has_role {
                    Ok(())
                } else {
                    Err(ContextError::NoAgencyRole(own.clone()))
                }
            }
            _ => Ok(()),
        }
    }

    /// The context of `caller` in `target` (from [`TenantContext::target`]), given the
    /// registry's answer for it.
    pub fn decide(
        caller: &Caller,
        target: &OrgId,
        place: TenantPlace,
    ) -> Result<Self, ContextError> {
        let own = caller.org_id.as_ref().ok_or(ContextError::NoOrganization)?;
        let roles_in = |org: &OrgId| -> BTreeSet<String> {
            caller
                .roles
                .iter()
                .filter(|(_, orgs)| orgs.contains(org))
                .map(|(role, _)| role.clone())
                .collect()
        };
        if target == own {
            return Ok(Self {
                org_id: own.clone(),
                kind: place.kind,
                parent_org_id: place.parent_org_id,
                roles: roles_in(own),
                via_agency: None,
            });
        }
        if place.kind != TenantKind::Client || place.parent_org_id.as_ref() != Some(own) {
            return Err(ContextError::NotYourClient {
                target: target.clone(),
                own: own.clone(),
            });
        }
        let roles = roles_in(own);
        if roles.is_empty() {
            return Err(ContextError::NoAgencyRole(own.clone()));
        }
        // An answer without the agency's status (an older registry) counts as not active.
        let status = place.agency_status.unwrap_or(TenantStatus::Deleted);
        if status != TenantStatus::Active {
            return Err(ContextError::AgencyNotActive {
                agency: own.clone(),
                status,
            });
        }
        Ok(Self {
            org_id: target.clone(),
            kind: place.kind,
            parent_org_id: place.parent_org_id,
            roles,
            via_agency: Some(own.clone()),
        })
    }

    /// Whether the caller holds `role` here.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// Refuses a caller without any of `roles` here. A context in the caller's own organization
    /// carries no role check of its own (any verified user of the organization has one): a
    /// handler that reaches beyond the caller's own data (an agency's view of its clients, say)
    /// asks for the role it needs.
    pub fn require_role(&self, roles: &[&str]) -> Result<(), ContextError> {
        if roles.iter().any(|role| self.has_role(role)) {
            Ok(())
        } else {
            Err(ContextError::MissingRole {
                org: self
                    .via_agency
                    .clone()
                    .unwrap_or_else(|| self.org_id.clone()),
                roles: roles.join(", "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn org(id: &str) -> OrgId {
        id.parse().unwrap()
    }

    fn caller(own: &str, roles: &[&str]) -> Caller {
        Caller {
            subject: "u".into(),
            org_id: Some(org(own)),
            roles: roles
                .iter()
                .map(|r| (r.to_string(), BTreeSet::from([org(own)])))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn client_of(agency: &str) -> TenantPlace {
        TenantPlace {
            kind: TenantKind::Client,
            parent_org_id: Some(org(agency)),
            agency_status: Some(TenantStatus::Active),
        }
    }

    #[test]
    fn an_agency_caller_acts_in_its_clients_only() {
        let agent = caller("1", &["tenant_admin"]);
        let own = TenantContext::decide(
            &agent,
            &org("1"),
            TenantPlace {
                kind: TenantKind::Agency,
                parent_org_id: None,
                agency_status: None,
            },
        )
        .unwrap();
        assert_eq!((own.kind, own.via_agency), (TenantKind::Agency, None));
        let there = TenantContext::decide(&agent, &org("11"), client_of("1")).unwrap();
        assert_eq!(there.via_agency, Some(org("1")));
        assert!(there.has_role("tenant_admin"));
        assert!(matches!(
            TenantContext::decide(&agent, &org("21"), client_of("2")),
            Err(ContextError::NotYourClient { .. })
        ));
        let roleless = caller("1", &[]);
        assert_eq!(
            TenantContext::decide(&roleless, &org("11"), client_of("1")),
            Err(ContextError::NoAgencyRole(org("1")))
        );
    }

    #[test]
    fn nobody_acts_in_a_client_for_an_agency_that_is_not_active() {
        let agent = caller("1", &["tenant_admin"]);
        for status in [TenantStatus::Suspended, TenantStatus::Deleting] {
            let place = TenantPlace {
                agency_status: Some(status),
                ..client_of("1")
            };
            assert_eq!(
                TenantContext::decide(&agent, &org("11"), place),
                Err(ContextError::AgencyNotActive {
                    agency: org("1"),
                    status
                })
            );
        }
        let unknown = TenantPlace {
            agency_status: None,
            ..client_of("1")
        };
        assert!(TenantContext::decide(&agent, &org("11"), unknown).is_err());
        // The client's own users are not refused for their agency's status.
        let user = caller("11", &["tenant_admin"]);
        let place = TenantPlace {
            agency_status: Some(TenantStatus::Suspended),
            ..client_of("1")
        };
        assert!(TenantContext::decide(&user, &org("11"), place).is_ok());
    }

    #[test]
    fn a_caller_without_a_role_names_no_other_organization_before_anything_is_resolved() {
        let roleless = caller("1", &[]);
        assert_eq!(
            TenantContext::precheck(&roleless, Some(&org("11"))),
            Err(ContextError::NoAgencyRole(org("1")))
        );
        assert!(TenantContext::precheck(&roleless, Some(&org("1"))).is_ok());
        assert!(TenantContext::precheck(&roleless, None).is_ok());
        let agent = caller("1", &["tenant_user"]);
        assert!(TenantContext::precheck(&agent, Some(&org("11"))).is_ok());
    }

    #[test]
    fn a_client_caller_names_no_sibling() {
        let user = caller("11", &["tenant_admin"]);
        assert!(matches!(
            TenantContext::decide(&user, &org("12"), client_of("1")),
            Err(ContextError::NotYourClient { .. })
        ));
        assert_eq!(
            TenantContext::decide(&user, &org("11"), client_of("1"))
                .unwrap()
                .parent_org_id,
            Some(org("1"))
        );
    }

    #[test]
    fn the_header_is_one_valid_organization_id() {
        let mut headers = HeaderMap::new();
        assert_eq!(TenantContext::requested(&headers), Ok(None));
        headers.insert(TENANT_HEADER, "263014839178313731".parse().unwrap());
        assert_eq!(
            TenantContext::requested(&headers),
            Ok(Some(org("263014839178313731")))
        );
        headers.insert(TENANT_HEADER, "1; DROP".parse().unwrap());
        assert!(TenantContext::requested(&headers).is_err());
        headers.insert(TENANT_HEADER, "1".parse().unwrap());
        headers.append(TENANT_HEADER, "2".parse().unwrap());
        assert!(TenantContext::requested(&headers).is_err());
    }
}
