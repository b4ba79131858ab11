-- Storage warnings to deliver to the configured webhook: written in the transaction that
-- records the warning, delivered (and retried) by the registry's background loop.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    body            jsonb NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL;
