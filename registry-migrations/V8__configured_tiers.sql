-- Tiers come from the configuration file: any validated name, checked against the configured
-- tiers by the engine (on every request and at start-up), no longer a fixed list here.
ALTER TABLE tenants DROP CONSTRAINT IF EXISTS tenants_tier_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_tier_name CHECK (tier ~ '^[a-z][a-z0-9_]{0,31}$');
