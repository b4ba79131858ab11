-- A client moved to another agency takes a change sequence number, so routers (which build
-- tenant contexts from a tenant's kind and agency) see the move.
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
       OR NEW.parent_org_id IS DISTINCT FROM OLD.parent_org_id THEN
        PERFORM pg_advisory_xact_lock(hashtext('tenancy.change_seq'));
        NEW.change_seq := nextval('tenant_change_seq');
        PERFORM pg_notify('tenancy_tenant_changes', NEW.change_seq::text);
    END IF;
    RETURN NEW;
END
$$;
