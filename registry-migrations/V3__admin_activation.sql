-- Admin activation (inviting an organization's first admin in ZITADEL) is an operation of its
-- own. It touches no database, and may wait out a long ZITADEL outage, so it must not block the
-- tenant's other operations: the one-open-operation rule leaves it out, and it has its own.
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('provision', 'suspend', 'resume', 'retier', 'deprovision', 'purge', 'activate_admin'));

DROP INDEX operations_one_open_per_tenant;
CREATE UNIQUE INDEX operations_one_open_per_tenant ON operations (org_id)
    WHERE state IN ('queued', 'running') AND kind <> 'activate_admin';
CREATE UNIQUE INDEX operations_one_open_activation ON operations (org_id)
    WHERE state IN ('queued', 'running') AND kind = 'activate_admin';
