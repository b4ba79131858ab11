-- Tenant credentials: a role's password derives from a master key (named by its key id), the
-- tenant's org_id, a random nonce of its own and a generation. Rotation bumps the generation; a
-- purged and re-onboarded organization gets a new nonce, so an old password never returns.
-- Generation 0 marks passwords made before this migration (derived from the role name); the
-- next rotation (`tenantctl rekey`) moves them on.
ALTER TABLE tenants
    ADD COLUMN credential_generation integer NOT NULL DEFAULT 0,
    ADD COLUMN credential_nonce uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN credential_key_id text;

ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('provision', 'suspend', 'resume', 'retier', 'deprovision', 'purge',
                    'activate_admin', 'rotate_credentials', 'converge'));

-- Routers must see a rotation at once: it changes the password they connect with.
CREATE OR REPLACE FUNCTION tenants_bump_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.tier IS DISTINCT FROM OLD.tier
       OR NEW.server_id IS DISTINCT FROM OLD.server_id
       OR NEW.name IS DISTINCT FROM OLD.name
       OR NEW.credential_generation IS DISTINCT FROM OLD.credential_generation
       OR NEW.credential_key_id IS DISTINCT FROM OLD.credential_key_id THEN
        PERFORM pg_advisory_xact_lock(hashtext('tenancy.change_seq'));
        NEW.change_seq := nextval('tenant_change_seq');
        PERFORM pg_notify('tenancy_tenant_changes', NEW.change_seq::text);
    END IF;
    RETURN NEW;
END
$$;

-- The stable code of an operation's last error: tenant admins see a message for the code, never
-- the raw text (which may name servers, or quote PostgreSQL or ZITADEL).
ALTER TABLE operations ADD COLUMN last_error_code text;
