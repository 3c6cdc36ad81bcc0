-- Commonlab schema, part 3 (SQLite twin of migrations/postgres/0003):
-- telemetry events, consent history and the erasure log. Same conventions as
-- 0001 (STRICT, INTEGER, RFC 3339 text timestamps with six fractional
-- digits).
--
-- `events` is the highest-volume table (tens of millions of rows). It is a
-- rowid table, not WITHOUT ROWID: rows are wide (JSON properties) and
-- clients send random UUIDv4 ids as well as time-ordered UUIDv7 ones, so a
-- table clustered on event_id would scatter whole rows over random pages;
-- with a rowid the rows are appended and only the 16-byte ids land in
-- random places of their index. Old rows sit at the low rowids, which is
-- what retention deletes scan first.

-- One row per event. `event_id` is the client's UUID as 16 raw bytes (the
-- idempotency key); `unit` a 64-hex pseudonym, never a raw identifier;
-- `community` NULL when there is none (never ''); `ts` the client's event
-- time; `properties` a JSON object (text).
CREATE TABLE events (
    event_id    BLOB NOT NULL CHECK (length(event_id) = 16),
    unit        TEXT NOT NULL CHECK (length(unit) = 64 AND unit NOT GLOB '*[^0-9a-f]*'),
    community   TEXT CHECK (community <> ''),
    name        TEXT NOT NULL CHECK (name <> ''),
    ts          TEXT NOT NULL,
    received_at TEXT NOT NULL,
    properties  TEXT NOT NULL CHECK (json_type(properties) = 'object')
) STRICT;

-- Idempotency: a retried event is dropped by INSERT … ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX events_event_id_key ON events (event_id);

-- Metric queries (a unit's events of a name over time) and erasure by unit.
CREATE INDEX events_unit_name_ts_idx ON events (unit, name, ts);

-- Consent history: rows are only appended (the latest per (unit, scope) is
-- the state); only erasure of the unit deletes them.
CREATE TABLE consents (
    id           INTEGER PRIMARY KEY,
    unit         TEXT NOT NULL CHECK (length(unit) = 64 AND unit NOT GLOB '*[^0-9a-f]*'),
    scope        TEXT NOT NULL CHECK (scope <> ''),
    text_version TEXT NOT NULL CHECK (text_version <> ''),
    status       TEXT NOT NULL CHECK (status IN ('granted', 'withdrawn')),
    at           TEXT NOT NULL
) STRICT;

CREATE INDEX consents_unit_scope_idx ON consents (unit, scope, at);

-- One row per erasure of a unit, with how many rows of each kind were
-- deleted (JSON object). Kept so that erasures can be replayed after a
-- backup is restored; it keeps the unit's pseudonym and nothing else about
-- it. Append-only: see the triggers below.
CREATE TABLE erasure_log (
    id        INTEGER PRIMARY KEY,
    unit      TEXT NOT NULL CHECK (length(unit) = 64 AND unit NOT GLOB '*[^0-9a-f]*'),
    erased_at TEXT NOT NULL,
    counts    TEXT NOT NULL CHECK (json_type(counts) = 'object')
) STRICT;

CREATE INDEX erasure_log_erased_at_idx ON erasure_log (erased_at);

CREATE TRIGGER erasure_log_no_update
    BEFORE UPDATE ON erasure_log
BEGIN
    SELECT RAISE(ABORT, 'erasure_log is an append-only audit log: UPDATE is not allowed');
END;

CREATE TRIGGER erasure_log_no_delete
    BEFORE DELETE ON erasure_log
BEGIN
    SELECT RAISE(ABORT, 'erasure_log is an append-only audit log: DELETE is not allowed');
END;
