-- Commonlab schema, part 3: telemetry events, consent history and the
-- erasure log.
--
-- `events` is the highest-volume table (tens of millions of rows): rows are
-- inserted in bulk (COPY into a per-connection temporary staging table, then
-- INSERT … SELECT … ON CONFLICT DO NOTHING), never updated, deleted by
-- retention and erasure. Exactly two indexes, each one paid for by every
-- insert: the primary key on event_id (idempotency) and (unit, name, ts)
-- for metric queries and erasure. Columns are ordered widest-aligned first
-- (timestamps, uuid, then variable-length) to avoid alignment padding.
--
-- The unit check is written `octet_length(unit) = 64 AND unit !~ '[^0-9a-f]'`
-- rather than 0002's `unit ~ '^[0-9a-f]{64}$'`: same rule, but the bounded
-- repetition makes that regex cost several microseconds per row, which
-- measured as most of the server-side time of a bulk insert.

-- `event_id` is the client's UUID in the native 16-byte uuid type (compared
-- as bytes; a third of the size of its text form, in the table and in the
-- index). Clients send random UUIDv4 as well as time-ordered UUIDv7 ids:
-- v7 ids land at the right edge of the index, v4 ids anywhere in it.
-- `unit` is a 64-hex pseudonym, never a raw identifier; `community` NULL
-- when there is none (never ''); `ts` the client's event time.
CREATE TABLE events (
    ts          TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    event_id    UUID        NOT NULL,
    unit        TEXT        NOT NULL
        CHECK (octet_length(unit) = 64 AND unit !~ '[^0-9a-f]'),
    name        TEXT        NOT NULL CHECK (name <> ''),
    community   TEXT        CHECK (community <> ''),
    properties  JSONB       NOT NULL CHECK (jsonb_typeof(properties) = 'object'),
    CONSTRAINT events_pkey PRIMARY KEY (event_id)
);

-- Metric queries (a unit's events of a name over time) and erasure by unit.
CREATE INDEX events_unit_name_ts_idx ON events (unit, name, ts);

-- Consent history: rows are only appended (the latest per (unit, scope) is
-- the state); only erasure of the unit deletes them.
CREATE TABLE consents (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit         TEXT        NOT NULL CHECK (unit ~ '^[0-9a-f]{64}$'),
    scope        TEXT        NOT NULL CHECK (scope <> ''),
    text_version TEXT        NOT NULL CHECK (text_version <> ''),
    status       TEXT        NOT NULL CHECK (status IN ('granted', 'withdrawn')),
    at           TIMESTAMPTZ NOT NULL
);

CREATE INDEX consents_unit_scope_idx ON consents (unit, scope, at, id);

-- One row per erasure of a unit, with how many rows of each kind were
-- deleted. Kept so that erasures can be replayed after a backup is
-- restored; it keeps the unit's pseudonym and nothing else about it.
-- Append-only: see the triggers below.
CREATE TABLE erasure_log (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit      TEXT        NOT NULL CHECK (unit ~ '^[0-9a-f]{64}$'),
    erased_at TIMESTAMPTZ NOT NULL,
    counts    JSONB       NOT NULL CHECK (jsonb_typeof(counts) = 'object')
);

CREATE INDEX erasure_log_erased_at_idx ON erasure_log (erased_at, id);

CREATE FUNCTION erasure_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'erasure_log is an append-only audit log: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER erasure_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON erasure_log
    FOR EACH ROW EXECUTE FUNCTION erasure_log_append_only();

CREATE TRIGGER erasure_log_no_truncate
    BEFORE TRUNCATE ON erasure_log
    FOR EACH STATEMENT EXECUTE FUNCTION erasure_log_append_only();
