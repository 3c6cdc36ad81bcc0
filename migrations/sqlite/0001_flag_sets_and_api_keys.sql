-- Commonlab schema, part 1 (SQLite twin of migrations/postgres/0001): flag
-- sets with their append-only revision log, API keys, and change counters
-- that servers poll.
--
-- Conventions: STRICT tables; INTEGER ids and numbers; timestamps are TEXT
-- in RFC 3339 UTC with exactly six fractional digits and a 'Z'
-- (e.g. 2025-01-02T03:04:05.000006Z), written only by the store, so that
-- text order is time order.

CREATE TABLE flag_sets (
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE CHECK (name <> ''),
    current_revision INTEGER NOT NULL CHECK (current_revision >= 1),
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL
) STRICT;

CREATE TABLE flag_set_revisions (
    flag_set_id INTEGER NOT NULL REFERENCES flag_sets (id) ON DELETE RESTRICT,
    revision    INTEGER NOT NULL CHECK (revision >= 1),
    document    TEXT    NOT NULL,
    actor       TEXT    NOT NULL CHECK (actor <> ''),
    action      TEXT    NOT NULL CHECK (action <> ''),
    flag_key    TEXT,
    reason      TEXT    NOT NULL CHECK (reason <> ''),
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (flag_set_id, revision)
) STRICT;

CREATE INDEX flag_set_revisions_flag_key_idx
    ON flag_set_revisions (flag_set_id, flag_key, revision)
    WHERE flag_key IS NOT NULL;

CREATE TRIGGER flag_set_revisions_no_update
    BEFORE UPDATE ON flag_set_revisions
BEGIN
    SELECT RAISE(ABORT, 'flag_set_revisions is an append-only audit log: UPDATE is not allowed');
END;

CREATE TRIGGER flag_set_revisions_no_delete
    BEFORE DELETE ON flag_set_revisions
BEGIN
    SELECT RAISE(ABORT, 'flag_set_revisions is an append-only audit log: DELETE is not allowed');
END;

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY CHECK (length(id) = 12 AND id NOT GLOB '*[^0-9a-f]*'),
    name       TEXT NOT NULL CHECK (name <> ''),
    role       TEXT NOT NULL CHECK (role <> ''),
    hash_hex   TEXT NOT NULL CHECK (length(hash_hex) = 64 AND hash_hex NOT GLOB '*[^0-9a-f]*'),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

CREATE UNIQUE INDEX api_keys_active_name_key ON api_keys (name) WHERE revoked_at IS NULL;

CREATE TABLE change_counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;

INSERT INTO change_counters (name, value) VALUES ('api_keys', 0);
