-- The registry database: the source of truth of the control plane (DESIGN.md §3).

CREATE TABLE database_servers (
    id               text PRIMARY KEY,
    region           text NOT NULL,
    host             text NOT NULL,
    port             integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    admin_user       text NOT NULL,
    -- The environment variable (in every registry process) holding admin_user's password.
    password_env     text,
    admin_database   text NOT NULL DEFAULT 'postgres',
    capacity         integer NOT NULL CHECK (capacity >= 0),
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'disabled')),
    template_version integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX database_servers_region ON database_servers (region, state);

-- Bumped on every tenant change that services must see (status, tier, placement): the change feed.
CREATE SEQUENCE tenant_change_seq;

CREATE TABLE tenants (
    org_id               text PRIMARY KEY,
    name                 text NOT NULL,
    slug                 text NOT NULL UNIQUE,
    db_name              text NOT NULL UNIQUE,
    role_name            text NOT NULL UNIQUE,
    server_id            text REFERENCES database_servers (id),
    region               text NOT NULL,
    tier                 text NOT NULL CHECK (tier IN ('free', 'standard', 'premium')),
    status               text NOT NULL CHECK (status IN ('provisioning', 'active', 'suspended', 'failed', 'deleting', 'deleted')),
    status_reason        text,
    parent_org_id        text REFERENCES tenants (org_id),
    admin_email          text,
    schema_version       integer,
    last_migration_error text,
    -- The normalized create request, to tell a repeated request (200) from a conflicting one (409).
    request              jsonb NOT NULL,
    change_seq           bigint NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    purge_after          timestamptz
);
-- Every change services must see (status, tier, placement, name) takes the next change sequence
-- number here, in one place. The transaction-scoped lock makes sequence order commit order, so a
-- change-feed reader that has seen N never later finds a smaller number appearing.
CREATE FUNCTION tenants_bump_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.tier IS DISTINCT FROM OLD.tier
       OR NEW.server_id IS DISTINCT FROM OLD.server_id
       OR NEW.name IS DISTINCT FROM OLD.name THEN
        PERFORM pg_advisory_xact_lock(hashtext('tenancy.change_seq'));
        NEW.change_seq := nextval('tenant_change_seq');
        PERFORM pg_notify('tenancy_tenant_changes', NEW.change_seq::text);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tenants_change_seq BEFORE INSERT OR UPDATE ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenants_bump_change_seq();

CREATE INDEX tenants_server ON tenants (server_id) WHERE status <> 'deleted';
CREATE INDEX tenants_status ON tenants (status, org_id);
CREATE INDEX tenants_change_seq ON tenants (change_seq);
CREATE INDEX tenants_purge ON tenants (purge_after) WHERE status = 'deleted';

-- Operations are not tied to the tenants table by a foreign key: a purge removes the tenant row
-- while its operations stay as history.
CREATE TABLE operations (
    id               uuid PRIMARY KEY,
    org_id           text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('provision', 'suspend', 'resume', 'retier', 'deprovision', 'purge')),
    state            text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    step             text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    run_after        timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    payload          jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- At most one unfinished operation per tenant: operations on one tenant never interleave.
CREATE UNIQUE INDEX operations_one_open_per_tenant ON operations (org_id) WHERE state IN ('queued', 'running');
CREATE INDEX operations_claimable ON operations (run_after) WHERE state IN ('queued', 'running');
CREATE INDEX operations_by_tenant ON operations (org_id, created_at DESC);

CREATE TABLE audit_events (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor_subject text NOT NULL,
    actor_org     text,
    action        text NOT NULL,
    org_id        text,
    request_id    text,
    before        jsonb,
    after         jsonb
);
CREATE INDEX audit_events_by_tenant ON audit_events (org_id, id DESC);

-- The warm pool: databases cloned ahead of demand, claimed by renaming.
CREATE TABLE spare_databases (
    db_name          text PRIMARY KEY,
    server_id        text NOT NULL REFERENCES database_servers (id),
    template_version integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX spare_databases_claim ON spare_databases (server_id, template_version, created_at);

-- Tenant roles may live on the same cluster as the registry (as in `make run`): keep them out.
-- Only the database owner can do this; anyone else gets a notice and should do it by hand.
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'not the owner of database %: revoke CONNECT from PUBLIC by hand', current_database();
END
$$;
