-- ZITADEL organization events applied, to apply each (aggregate, sequence) at most once and to
-- ignore events older than one already applied (a replayed deactivation after a reactivation).
CREATE TABLE zitadel_events (
    aggregate_id text NOT NULL,
    sequence     bigint NOT NULL,
    event_type   text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_id, sequence)
);
