-- An agency's caps on the sum over its clients (`[tiers.<name>.client_quotas]`): what its
-- clients' increments have counted, by resource and period, while they were its clients.
CREATE TABLE agency_quota_usage (
    agency_org_id text NOT NULL REFERENCES tenants (org_id) ON DELETE CASCADE,
    resource      text NOT NULL,
    period_start  timestamptz NOT NULL,
    used          bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (agency_org_id, resource, period_start)
);
