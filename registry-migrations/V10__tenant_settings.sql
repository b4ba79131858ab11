-- Per-tenant settings. Plain values are their JSON text (text, not jsonb: jsonb cannot hold a
-- U+0000 that JSON can); a secret's value is stored only encrypted
-- (AES-256-GCM under a key derived from the master key `key_id` names: nonce || ciphertext).
CREATE TABLE tenant_settings (
    org_id     text NOT NULL REFERENCES tenants (org_id) ON DELETE CASCADE,
    key        text NOT NULL,
    type       text NOT NULL CHECK (type IN ('string', 'number', 'bool', 'json', 'secret')),
    value      text,
    ciphertext bytea,
    key_id     text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key),
    CHECK (CASE WHEN type = 'secret'
                THEN value IS NULL AND ciphertext IS NOT NULL AND key_id IS NOT NULL
                ELSE value IS NOT NULL AND ciphertext IS NULL AND key_id IS NULL END)
);
CREATE INDEX tenant_settings_key_id ON tenant_settings (key_id) WHERE key_id IS NOT NULL;

-- Bumped by every settings change, so it takes a change sequence number and routers see it.
ALTER TABLE tenants ADD COLUMN settings_version bigint NOT NULL DEFAULT 0;

CREATE OR REPLACE FUNCTION tenants_bump_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.tier IS DISTINCT FROM OLD.tier
       OR NEW.server_id IS DISTINCT FROM OLD.server_id
       OR NEW.name IS DISTINCT FROM OLD.name
       OR NEW.credential_generation IS DISTINCT FROM OLD.credential_generation
       OR NEW.credential_key_id IS DISTINCT FROM OLD.credential_key_id
       OR NEW.settings_version IS DISTINCT FROM OLD.settings_version THEN
        PERFORM pg_advisory_xact_lock(hashtext('tenancy.change_seq'));
        NEW.change_seq := nextval('tenant_change_seq');
        PERFORM pg_notify('tenancy_tenant_changes', NEW.change_seq::text);
    END IF;
    RETURN NEW;
END
$$;
