-- Backups of tenant databases in the backup store, and restores from them.
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('provision', 'suspend', 'resume', 'retier', 'deprovision', 'purge',
                    'activate_admin', 'rotate_credentials', 'converge', 'move', 'backup',
                    'restore', 'restore_copy'));

-- Each tenant's backup key: an X25519 identity (age), sealed under the master key `key_id` like
-- a secret setting. Every backup of the tenant is encrypted to its public half; a purge deletes
-- the row, after which no backup of the tenant decrypts with what the registry holds.
CREATE TABLE tenant_backup_keys (
    org_id      text PRIMARY KEY,
    key_id      text NOT NULL,
    sealed      bytea NOT NULL,
    recipient   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The catalog: one row per backup object. A row is written before its object, and an object
-- deleted before its row, so that an object never exists without a row.
CREATE TABLE backups (
    id              uuid PRIMARY KEY,
    org_id          text NOT NULL,
    operation_id    uuid NOT NULL REFERENCES operations (id),
    kind            text NOT NULL
                    CHECK (kind IN ('scheduled', 'manual', 'pre_restore', 'pre_delete')),
    state           text NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    object_key      text NOT NULL UNIQUE,
    server_id       text,
    size_bytes      bigint,
    stored_bytes    bigint,
    sha256          text,
    schema_version  integer,
    row_counts      jsonb,
    large_objects   bigint,
    duration_ms     bigint,
    error           text,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    expires_at      timestamptz,
    -- The last verification (`tenantctl backups verify`): restored into a scratch database
    -- and compared with `row_counts`.
    verified_at     timestamptz,
    verification    text,
    verified_ok     boolean,
    UNIQUE (operation_id, kind)
);
CREATE INDEX backups_by_tenant ON backups (org_id, created_at DESC, id DESC);
CREATE INDEX backups_expiring ON backups (expires_at) WHERE expires_at IS NOT NULL;

-- One row per restore operation: which backup, what the verification found, and the database
-- it replaced, kept (renamed, closed) until `retained_until`. A copy into a new tenant names it
-- (`into_org_id`); `org_id` is the tenant whose backup it is.
CREATE TABLE tenant_restores (
    operation_id        uuid PRIMARY KEY REFERENCES operations (id),
    org_id              text NOT NULL,
    into_org_id         text,
    backup_id           uuid REFERENCES backups (id) ON DELETE SET NULL,
    server_id           text,
    verification        text,
    swapped_at          timestamptz,
    retained_db_name    text,
    retained_until      timestamptz,
    retained_dropped_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_restores_retained ON tenant_restores (retained_until)
    WHERE retained_db_name IS NOT NULL AND retained_dropped_at IS NULL;

-- A restore swapping a tenant's database in place is a change routers must see (their
-- connections to the replaced database were ended).
ALTER TABLE tenants ADD COLUMN restored_at timestamptz;
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
       OR NEW.read_only IS DISTINCT FROM OLD.read_only
       OR NEW.kind IS DISTINCT FROM OLD.kind
       OR NEW.parent_org_id IS DISTINCT FROM OLD.parent_org_id
       OR NEW.restored_at IS DISTINCT FROM OLD.restored_at THEN
        PERFORM pg_advisory_xact_lock(hashtext('tenancy.change_seq'));
        NEW.change_seq := nextval('tenant_change_seq');
        PERFORM pg_notify('tenancy_tenant_changes', NEW.change_seq::text);
    END IF;
    RETURN NEW;
END
$$;

-- Backups run in a lane of their own: one open backup per tenant, beside its other operations.
DROP INDEX operations_one_open_per_tenant;
CREATE UNIQUE INDEX operations_one_open_per_tenant ON operations (org_id)
    WHERE state IN ('queued', 'running')
      AND kind NOT IN ('activate_admin', 'backup', 'restore_copy');
CREATE UNIQUE INDEX operations_one_open_backup ON operations (org_id)
    WHERE state IN ('queued', 'running') AND kind IN ('backup', 'restore_copy');
