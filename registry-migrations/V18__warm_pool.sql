-- The warm pool (V1's spare_databases). A spare is recorded before it is cloned and is `ready`
-- once it is; a claim names its tenant until the spare is renamed to the tenant's database, so a
-- crash anywhere leaves a row that says what to finish or to clean up.
ALTER TABLE spare_databases
    ADD COLUMN ready boolean NOT NULL DEFAULT false,
    ADD COLUMN claimed_by text REFERENCES tenants (org_id) ON DELETE CASCADE;
CREATE UNIQUE INDEX spare_databases_one_claim_per_tenant ON spare_databases (claimed_by)
    WHERE claimed_by IS NOT NULL;

-- Which way a provisioning got its database: a claimed spare or a clone.
ALTER TABLE operations ADD COLUMN provision_path text
    CHECK (provision_path IN ('warm', 'cold'));
