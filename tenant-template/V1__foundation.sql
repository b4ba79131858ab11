-- Baseline shared by every product module. The control plane creates the NOLOGIN group role
-- tenancy_app before migrating; each tenant's login role is a member, so the privileges below
-- (and the default privileges for objects later migrations create) reach every tenant role,
-- while CONNECT on each database is granted to its own tenant role only.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO tenancy_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO tenancy_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO tenancy_app;
GRANT USAGE ON SCHEMA public TO tenancy_app;
GRANT SELECT ON refinery_schema_history TO tenancy_app;

CREATE TYPE member_role AS ENUM ('owner', 'admin', 'member', 'viewer');

CREATE TABLE members (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    zitadel_user text NOT NULL UNIQUE,
    email        text NOT NULL,
    display_name text NOT NULL,
    role         member_role NOT NULL DEFAULT 'member',
    created_at   timestamptz NOT NULL DEFAULT now(),
    deactivated_at timestamptz
);
CREATE UNIQUE INDEX members_email ON members (lower(email));

CREATE TABLE teams (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_members (
    team_id   bigint NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    member_id bigint NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, member_id)
);

CREATE TABLE settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE activity_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    member_id  bigint REFERENCES members (id) ON DELETE SET NULL,
    action     text NOT NULL,
    subject    text,
    detail     jsonb,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activity_log_at ON activity_log (at DESC);
