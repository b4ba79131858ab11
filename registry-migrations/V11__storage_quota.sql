-- Storage quotas: the usage sampler's history, and tenants made read-only for being over quota.

CREATE TABLE usage_samples (
    org_id      text NOT NULL REFERENCES tenants (org_id) ON DELETE CASCADE,
    sampled_at  timestamptz NOT NULL,
    size_bytes  bigint NOT NULL,
    connections bigint NOT NULL,
    PRIMARY KEY (org_id, sampled_at)
);
CREATE INDEX usage_samples_at ON usage_samples (sampled_at);

ALTER TABLE tenants
    ADD COLUMN read_only boolean NOT NULL DEFAULT false,
    ADD COLUMN read_only_reason text,
    -- The highest storage warning level (80, 95) crossed and not yet fallen back under.
    ADD COLUMN storage_warning smallint NOT NULL DEFAULT 0;

-- Settings (V10) and read_only take a change sequence number, so routers see them.
CREATE OR REPLACE FUNCTION tenants_bump_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.tier IS DISTINCT FROM OLD.tier
       OR NEW.server_id IS DISTINCT FROM OLD.server_id
       OR NEW.name IS DISTINCT FROM OLD.name
       OR NEW.credential_generation IS DISTINCT FROM OLD.credential_generation
       OR NEW.credential_key_id IS DISTINCT FROM OLD.credential_key_id
       OR NEW.settings_version IS DISTINCT FROM OLD.settings_version
       OR NEW.read_only IS DISTINCT FROM OLD.read_only THEN
        PERFORM pg_advisory_xact_lock(hashtext('tenancy.change_seq'));
        NEW.change_seq := nextval('tenant_change_seq');
        PERFORM pg_notify('tenancy_tenant_changes', NEW.change_seq::text);
    END IF;
    RETURN NEW;
END
$$;
