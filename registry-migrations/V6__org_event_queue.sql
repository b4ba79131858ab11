-- ZITADEL organization events are applied from a queue: the webhook records an event (once per
-- organization and sequence, never one older than an event already recorded) and answers at once;
-- a background applier applies each organization's events in sequence order, retrying later when
-- the tenant is busy. Events recorded before this migration were applied when they arrived.
ALTER TABLE zitadel_events
    ADD COLUMN change jsonb,
    ADD COLUMN state text NOT NULL DEFAULT 'applied'
        CHECK (state IN ('pending', 'applied', 'failed')),
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text,
    ADD COLUMN run_after timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN applied_at timestamptz;
CREATE INDEX zitadel_events_pending ON zitadel_events (run_after) WHERE state = 'pending';
