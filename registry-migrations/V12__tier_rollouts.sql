-- The role limits of each tier last rolled out to its tenants: a configuration whose figures
-- differ queues a `retier` of every tenant of the tier, then records the new figures.
CREATE TABLE tier_rollouts (
    tier        text PRIMARY KEY,
    figures     text NOT NULL,
    rolled_out_at timestamptz NOT NULL DEFAULT now()
);
