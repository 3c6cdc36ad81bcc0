-- Commonlab schema, part 1: flag sets with their append-only revision log,
-- API keys, and change counters that servers poll.
--
-- Conventions for every later migration: BIGINT identities, TIMESTAMPTZ,
-- JSONB for structured payloads that are queried, TEXT for documents that
-- must be kept byte for byte (the flag documents below), and an index for
-- every lookup the store performs.

-- The head of each flag set. `current_revision` caches the newest revision
-- number; it is changed only together with the insertion of that revision,
-- and the conditional UPDATE on it is what makes concurrent appends safe.
CREATE TABLE flag_sets (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             TEXT        NOT NULL CHECK (name <> ''),
    current_revision BIGINT      NOT NULL CHECK (current_revision >= 1),
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT flag_sets_name_key UNIQUE (name)
);

-- Every revision of every flag set, with the whole flagd document as it was
-- written (TEXT, not JSONB: JSONB would reorder keys and drop formatting).
-- Append-only: see the triggers below.
CREATE TABLE flag_set_revisions (
    flag_set_id BIGINT      NOT NULL REFERENCES flag_sets (id) ON DELETE RESTRICT,
    revision    BIGINT      NOT NULL CHECK (revision >= 1),
    document    TEXT        NOT NULL,
    actor       TEXT        NOT NULL CHECK (actor <> ''),
    action      TEXT        NOT NULL CHECK (action <> ''),
    flag_key    TEXT,
    reason      TEXT        NOT NULL CHECK (reason <> ''),
    created_at  TIMESTAMPTZ NOT NULL,
    -- Also the index for head / revision lookups and history pagination.
    CONSTRAINT flag_set_revisions_pkey PRIMARY KEY (flag_set_id, revision)
);

-- History filtered by flag key, newest first.
CREATE INDEX flag_set_revisions_flag_key_idx
    ON flag_set_revisions (flag_set_id, flag_key, revision)
    WHERE flag_key IS NOT NULL;

CREATE FUNCTION flag_set_revisions_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'flag_set_revisions is an append-only audit log: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER flag_set_revisions_no_update_or_delete
    BEFORE UPDATE OR DELETE ON flag_set_revisions
    FOR EACH ROW EXECUTE FUNCTION flag_set_revisions_append_only();

CREATE TRIGGER flag_set_revisions_no_truncate
    BEFORE TRUNCATE ON flag_set_revisions
    FOR EACH STATEMENT EXECUTE FUNCTION flag_set_revisions_append_only();

-- API keys. Only the SHA-256 of a key is stored. Revoked keys stay (audit);
-- a name is unique among the keys that are not revoked.
CREATE TABLE api_keys (
    id         TEXT        PRIMARY KEY CHECK (id ~ '^[0-9a-f]{12}$'),
    name       TEXT        NOT NULL CHECK (name <> ''),
    role       TEXT        NOT NULL CHECK (role <> ''),
    hash_hex   TEXT        NOT NULL CHECK (hash_hex ~ '^[0-9a-f]{64}$'),
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT        NOT NULL,
    revoked_at TIMESTAMPTZ
);

CREATE UNIQUE INDEX api_keys_active_name_key ON api_keys (name) WHERE revoked_at IS NULL;

-- Counters bumped in the same transaction as the change they announce, so
-- that servers can poll one row to learn whether to reload something.
CREATE TABLE change_counters (
    name  TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO change_counters (name, value) VALUES ('api_keys', 0);
