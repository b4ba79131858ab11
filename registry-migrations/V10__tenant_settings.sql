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

-- Bumped by every settings change, so it takes a change sequence number and routers see it (the
-- trigger that does so is replaced in V11, with the storage quota's read_only).
ALTER TABLE tenants ADD COLUMN settings_version bigint NOT NULL DEFAULT 0;
