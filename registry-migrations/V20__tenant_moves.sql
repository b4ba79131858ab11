-- Moving a tenant's database to another server. One row per move operation says where from and
-- to, how, and what it measured; the tenant's server_id changes only at the move's switch.
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check
    CHECK (kind IN ('provision', 'suspend', 'resume', 'retier', 'deprovision', 'purge',
                    'activate_admin', 'rotate_credentials', 'converge', 'move'));

CREATE TABLE tenant_moves (
    operation_id          uuid PRIMARY KEY REFERENCES operations (id),
    org_id                text NOT NULL,
    source_server_id      text NOT NULL REFERENCES database_servers (id),
    target_server_id      text NOT NULL REFERENCES database_servers (id),
    mode                  text NOT NULL CHECK (mode IN ('online', 'offline')),
    mode_requested        boolean NOT NULL,
    bytes_copied          bigint,
    lag_bytes_at_cutover  bigint,
    -- Set once when the tenant is blocked on the source; the downtime runs from here.
    blocked_at            timestamptz,
    downtime_ms           bigint,
    verification          text,
    switched_at           timestamptz,
    retained_db_name      text,
    retained_until        timestamptz,
    source_dropped_at     timestamptz,
    aborted               text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    CHECK (source_server_id <> target_server_id)
);
CREATE INDEX tenant_moves_by_tenant ON tenant_moves (org_id, created_at DESC);
CREATE INDEX tenant_moves_retained ON tenant_moves (retained_until)
    WHERE retained_db_name IS NOT NULL AND source_dropped_at IS NULL;
