-- Product quotas (users, devices, API calls, ...): what each tenant has counted in each period,
-- and every counted increment. A purge removes both with the tenant.

CREATE TABLE quota_usage (
    org_id       text NOT NULL REFERENCES tenants (org_id) ON DELETE CASCADE,
    resource     text NOT NULL,
    -- The start of the period (1970-01-01 for a quota that never resets).
    period_start timestamptz NOT NULL,
    used         bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (org_id, resource, period_start)
);

CREATE TABLE usage_log (
    id              bigserial PRIMARY KEY,
    org_id          text NOT NULL REFERENCES tenants (org_id) ON DELETE CASCADE,
    resource        text NOT NULL,
    period_start    timestamptz NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    used_after      bigint NOT NULL,
    idempotency_key text,
    actor           text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
-- A key counts once per tenant and resource: a second insert conflicts (and waits for a first
-- one still in flight), so a replay racing its original still counts once.
CREATE UNIQUE INDEX usage_log_idempotency ON usage_log (org_id, resource, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX usage_log_tenant ON usage_log (org_id, id DESC);
