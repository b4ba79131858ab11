-- A spare cloned with a role of its own (NOLOGIN, the template's privileges mirrored to it at
-- birth): a claim renames that role into the tenant's, so onboarding opens no connection into
-- the database. Spares from before have none (their claim mirrors the privileges as a clone).
ALTER TABLE spare_databases ADD COLUMN has_role boolean NOT NULL DEFAULT false;
