-- Who may change a setting back: a feature override a platform admin made is the platform's
-- (a tenant admin can neither change nor remove it). Overrides made before this version are
-- taken as the platform's.
ALTER TABLE tenant_settings ADD COLUMN set_by_platform boolean NOT NULL DEFAULT true;
