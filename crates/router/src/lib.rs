//! Connection router for product services: per-tenant pools (filled by the router issue).
