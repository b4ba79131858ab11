-- Agencies and their clients: platform -> agency -> client, exactly. A client names its agency
-- in parent_org_id; standalone tenants and agencies have no parent.
ALTER TABLE tenants ADD COLUMN kind text NOT NULL DEFAULT 'standalone'
    CHECK (kind IN ('standalone', 'agency', 'client'));
UPDATE tenants SET kind = 'client' WHERE parent_org_id IS NOT NULL;
UPDATE tenants SET kind = 'agency'
    WHERE parent_org_id IS NULL
      AND org_id IN (SELECT parent_org_id FROM tenants WHERE parent_org_id IS NOT NULL);
ALTER TABLE tenants ADD CONSTRAINT tenants_clients_have_a_parent
    CHECK ((kind = 'client') = (parent_org_id IS NOT NULL));
CREATE INDEX tenants_parent ON tenants (parent_org_id, org_id) WHERE parent_org_id IS NOT NULL;
