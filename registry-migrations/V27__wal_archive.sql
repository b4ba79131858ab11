-- The WAL archive of database servers, for point-in-time restores of one tenant.

ALTER TABLE backups DROP CONSTRAINT backups_kind_check;
ALTER TABLE backups ADD CONSTRAINT backups_kind_check
    CHECK (kind IN ('scheduled', 'manual', 'pre_restore', 'pre_delete', 'point_in_time'));

-- A point-in-time restore names its moment; its backup (`backup_id`) is the dump of the
-- tenant's database recovered to that moment, made by its `recover` step, from `recovered_from`.
ALTER TABLE tenant_restores ADD COLUMN point_in_time timestamptz;
ALTER TABLE tenant_restores ADD COLUMN recovered_from text;

-- Each archived server's key: an age identity sealed under the master key like a tenant's
-- backup key (bound to the server's id). Its WAL and base backups are encrypted to it.
CREATE TABLE wal_archive_keys (
    server_id   text PRIMARY KEY,
    key_id      text NOT NULL,
    sealed      bytea NOT NULL,
    recipient   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Base backups (`pg_basebackup`, a tar stream encrypted into the store). `start_segno` is the
-- segment the server wrote when it began (recovery needs WAL from there); `databases` the
-- server's databases then (name, oid, bytes), so a recovery can leave other tenants' out.
CREATE TABLE wal_base_backups (
    id            uuid PRIMARY KEY,
    server_id     text NOT NULL,
    timeline      integer NOT NULL,
    start_segno   bigint NOT NULL,
    object_key    text NOT NULL UNIQUE,
    state         text NOT NULL CHECK (state IN ('running', 'completed', 'failed')),
    size_bytes    bigint,
    stored_bytes  bigint,
    sha256        text,
    databases     jsonb NOT NULL DEFAULT '[]',
    error         text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
CREATE INDEX wal_base_backups_by_server ON wal_base_backups (server_id, completed_at);

-- Archived WAL segments: one row per segment, written once it is stored. The primary key is
-- what keeps a keeper taking over from storing one twice.
CREATE TABLE wal_segments (
    server_id     text NOT NULL,
    timeline      integer NOT NULL,
    segno         bigint NOT NULL,
    -- Where the segment ends (the next one's start).
    end_lsn       pg_lsn NOT NULL,
    object_key    text NOT NULL,
    stored_bytes  bigint NOT NULL,
    sha256        text NOT NULL,
    archived_by   text NOT NULL,
    archived_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server_id, timeline, segno)
);

-- Marks: a commit the keeper (or a restore) made on the server at `at`, and where the server's
-- WAL ended just after it. Once the segment holding `lsn` is archived, every transaction
-- committed before `at` is in the archive, followed by a commit after it: a recovery to a
-- moment before `at` can stop.
CREATE TABLE wal_marks (
    server_id  text NOT NULL,
    at         timestamptz NOT NULL,
    lsn        pg_lsn NOT NULL,
    PRIMARY KEY (server_id, at)
);
