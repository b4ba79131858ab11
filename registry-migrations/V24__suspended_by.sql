-- Who suspended a tenant decides who may resume it (docs/security.md). Suspensions made before
-- this version are told apart by their reason where it says; any other is taken as the
-- platform's, so that no agency admin can lift it.
ALTER TABLE tenants ADD COLUMN suspended_by text
    CHECK (suspended_by IN ('platform', 'zitadel', 'agency', 'agency_cascade'));

UPDATE tenants SET suspended_by = CASE status_reason
        WHEN 'organization deactivated in ZITADEL' THEN 'zitadel'
        WHEN 'agency suspended' THEN 'agency_cascade'
        ELSE 'platform' END
    WHERE status = 'suspended';

ALTER TABLE tenants ADD CONSTRAINT tenants_suspended_by_while_suspended
    CHECK ((status = 'suspended') = (suspended_by IS NOT NULL));
