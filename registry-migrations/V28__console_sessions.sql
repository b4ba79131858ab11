-- The admin console's signed-in sessions, shared by every replica. The cookie holds a random
-- id; only its SHA-256 is stored, so a reader of this table cannot take over a session.
CREATE TABLE console_sessions (
    id_hash     bytea PRIMARY KEY,
    -- The verified caller at sign-in: subject, organization, roles (as the API reads them).
    caller      jsonb NOT NULL,
    -- For ZITADEL's end-session endpoint (id_token_hint) at sign-out.
    id_token    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
