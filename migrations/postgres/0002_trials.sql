-- Commonlab schema, part 2: trials (experiments as code) with their
-- append-only audit log, unit assignments, per-stratum position counters
-- for blocked designs, and first exposures.
--
-- Assignments and exposures may reach millions of rows per trial: rows are
-- kept narrow (the trial is a BIGINT id, units are 64-hex pseudonyms) and
-- their primary keys (trial_id, unit) serve lookups, stickiness, first-wins
-- inserts and keyset pagination by unit.

-- The trial's spec is kept twice: the researcher's TOML byte for byte
-- (spec_source) and core's canonical JSON (spec_canonical, TEXT so that its
-- hash stays reproducible). `version` starts at 1 and is bumped by amend;
-- `seed` and `allocation` are recorded when the trial starts.
CREATE TABLE trials (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key            TEXT        NOT NULL CHECK (key <> ''),
    flag_key       TEXT        NOT NULL CHECK (flag_key <> ''),
    status         TEXT        NOT NULL
        CHECK (status IN ('draft', 'running', 'stopped', 'concluded', 'archived')),
    spec_source    TEXT        NOT NULL,
    spec_canonical TEXT        NOT NULL,
    spec_hash      TEXT        NOT NULL CHECK (spec_hash ~ '^[0-9a-f]{64}$'),
    version        BIGINT      NOT NULL CHECK (version >= 1),
    seed           BIGINT,
    allocation     TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    started_at     TIMESTAMPTZ,
    stopped_at     TIMESTAMPTZ,
    concluded_at   TIMESTAMPTZ,
    archived_at    TIMESTAMPTZ,
    CONSTRAINT trials_key_key UNIQUE (key),
    CONSTRAINT trials_started_has_seed
        CHECK (status = 'draft' OR (seed IS NOT NULL AND started_at IS NOT NULL))
);

-- Listing by status (running trials for server caches).
CREATE INDEX trials_status_idx ON trials (status, key);

-- Every change to every trial. Append-only: see the triggers below. `seq`
-- numbers a trial's events 1, 2, 3, … and is computed under the row lock
-- that the change takes on its trial.
CREATE TABLE trial_events (
    trial_id   BIGINT      NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    seq        BIGINT      NOT NULL CHECK (seq >= 1),
    action     TEXT        NOT NULL
        CHECK (action IN ('create', 'update', 'start', 'stop', 'conclude', 'archive', 'amend')),
    actor      TEXT        NOT NULL CHECK (actor <> ''),
    reason     TEXT        NOT NULL CHECK (reason <> ''),
    spec_hash  TEXT        NOT NULL,
    version    BIGINT      NOT NULL CHECK (version >= 1),
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT trial_events_pkey PRIMARY KEY (trial_id, seq)
);

CREATE FUNCTION trial_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'trial_events is an append-only audit log: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER trial_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON trial_events
    FOR EACH ROW EXECUTE FUNCTION trial_events_append_only();

CREATE TRIGGER trial_events_no_truncate
    BEFORE TRUNCATE ON trial_events
    FOR EACH STATEMENT EXECUTE FUNCTION trial_events_append_only();

-- One row per (trial, unit), never changed. `stratum` and `community` are
-- NULL when the design has none (never ''); `position` is the unit's place
-- in its stratum's sequence for blocked designs (NULL otherwise).
CREATE TABLE assignments (
    trial_id      BIGINT      NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    unit          TEXT        NOT NULL CHECK (unit ~ '^[0-9a-f]{64}$'),
    arm           TEXT        NOT NULL CHECK (arm <> ''),
    stratum       TEXT        CHECK (stratum <> ''),
    community     TEXT        CHECK (community <> ''),
    position      BIGINT      CHECK (position >= 0),
    trial_version BIGINT      NOT NULL CHECK (trial_version >= 1),
    assigned_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT assignments_pkey PRIMARY KEY (trial_id, unit)
);

-- The last guard of blocked designs: a position is given out once per stratum.
CREATE UNIQUE INDEX assignments_position_key
    ON assignments (trial_id, coalesce(stratum, ''), position)
    WHERE position IS NOT NULL;

-- Per-arm counts (index-only scans).
CREATE INDEX assignments_arm_idx ON assignments (trial_id, arm);

-- Blocked designs: the next position to give out in each stratum ('' is the
-- stratum of a design without strata). Assigning a new unit increments its
-- stratum's row, which serialises new assignments within a stratum only.
CREATE TABLE stratum_counters (
    trial_id      BIGINT NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    stratum       TEXT   NOT NULL,
    next_position BIGINT NOT NULL CHECK (next_position >= 0),
    CONSTRAINT stratum_counters_pkey PRIMARY KEY (trial_id, stratum)
);

-- The first exposure of each unit to each trial (later ones are dropped by
-- INSERT … ON CONFLICT DO NOTHING). `excluded` marks units that hit a
-- developer override: stored, but outside the analysis population.
CREATE TABLE exposures (
    trial_id        BIGINT      NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    unit            TEXT        NOT NULL CHECK (unit ~ '^[0-9a-f]{64}$'),
    arm             TEXT        NOT NULL CHECK (arm <> ''),
    community       TEXT        CHECK (community <> ''),
    trial_version   BIGINT      NOT NULL CHECK (trial_version >= 1),
    exposed_at      TIMESTAMPTZ NOT NULL,
    source          TEXT        NOT NULL CHECK (source IN ('single', 'bulk', 'explicit')),
    excluded        BOOLEAN     NOT NULL,
    excluded_reason TEXT,
    CONSTRAINT exposures_pkey PRIMARY KEY (trial_id, unit),
    CONSTRAINT exposures_excluded_has_reason CHECK (excluded = (excluded_reason IS NOT NULL))
);

-- Per-arm counts of the analysis population (index-only scans).
CREATE INDEX exposures_arm_idx ON exposures (trial_id, arm) WHERE NOT excluded;

INSERT INTO change_counters (name, value) VALUES ('trials', 0);
