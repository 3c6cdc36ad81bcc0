-- Commonlab schema, part 2 (SQLite twin of migrations/postgres/0002):
-- trials (experiments as code) with their append-only audit log, unit
-- assignments, per-stratum position counters for blocked designs, and first
-- exposures. Same conventions as 0001 (STRICT, INTEGER, RFC 3339 text
-- timestamps with six fractional digits). The high-volume tables
-- (assignments, exposures) are WITHOUT ROWID: the primary key is the table,
-- so a row is stored once, not once in the table and again in its key index.

CREATE TABLE trials (
    id             INTEGER PRIMARY KEY,
    key            TEXT    NOT NULL UNIQUE CHECK (key <> ''),
    flag_key       TEXT    NOT NULL CHECK (flag_key <> ''),
    status         TEXT    NOT NULL
        CHECK (status IN ('draft', 'running', 'stopped', 'concluded', 'archived')),
    spec_source    TEXT    NOT NULL,
    spec_canonical TEXT    NOT NULL,
    spec_hash      TEXT    NOT NULL
        CHECK (length(spec_hash) = 64 AND spec_hash NOT GLOB '*[^0-9a-f]*'),
    version        INTEGER NOT NULL CHECK (version >= 1),
    seed           INTEGER,
    allocation     TEXT,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    started_at     TEXT,
    stopped_at     TEXT,
    concluded_at   TEXT,
    archived_at    TEXT,
    CHECK (status = 'draft' OR (seed IS NOT NULL AND started_at IS NOT NULL))
) STRICT;

CREATE INDEX trials_status_idx ON trials (status, key);

CREATE TABLE trial_events (
    trial_id   INTEGER NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    action     TEXT    NOT NULL
        CHECK (action IN ('create', 'update', 'start', 'stop', 'conclude', 'archive', 'amend')),
    actor      TEXT    NOT NULL CHECK (actor <> ''),
    reason     TEXT    NOT NULL CHECK (reason <> ''),
    spec_hash  TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    created_at TEXT    NOT NULL,
    PRIMARY KEY (trial_id, seq)
) STRICT;

CREATE TRIGGER trial_events_no_update
    BEFORE UPDATE ON trial_events
BEGIN
    SELECT RAISE(ABORT, 'trial_events is an append-only audit log: UPDATE is not allowed');
END;

CREATE TRIGGER trial_events_no_delete
    BEFORE DELETE ON trial_events
BEGIN
    SELECT RAISE(ABORT, 'trial_events is an append-only audit log: DELETE is not allowed');
END;

-- One row per (trial, unit), never changed. `stratum` and `community` are
-- NULL when the design has none (never ''); `position` is the unit's place
-- in its stratum's sequence for blocked designs (NULL otherwise).
CREATE TABLE assignments (
    trial_id      INTEGER NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    unit          TEXT    NOT NULL CHECK (length(unit) = 64 AND unit NOT GLOB '*[^0-9a-f]*'),
    arm           TEXT    NOT NULL CHECK (arm <> ''),
    stratum       TEXT    CHECK (stratum <> ''),
    community     TEXT    CHECK (community <> ''),
    position      INTEGER CHECK (position >= 0),
    trial_version INTEGER NOT NULL CHECK (trial_version >= 1),
    assigned_at   TEXT    NOT NULL,
    PRIMARY KEY (trial_id, unit)
) STRICT, WITHOUT ROWID;

-- The last guard of blocked designs: a position is given out once per stratum.
CREATE UNIQUE INDEX assignments_position_key
    ON assignments (trial_id, coalesce(stratum, ''), position)
    WHERE position IS NOT NULL;

-- Per-arm counts.
CREATE INDEX assignments_arm_idx ON assignments (trial_id, arm);

-- Blocked designs: the next position to give out in each stratum ('' is the
-- stratum of a design without strata).
CREATE TABLE stratum_counters (
    trial_id      INTEGER NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    stratum       TEXT    NOT NULL,
    next_position INTEGER NOT NULL CHECK (next_position >= 0),
    PRIMARY KEY (trial_id, stratum)
) STRICT;

-- The first exposure of each unit to each trial (later ones are dropped).
-- `excluded` (0/1) marks units that hit a developer override: stored, but
-- outside the analysis population; `excluded_reason` says why.
CREATE TABLE exposures (
    trial_id        INTEGER NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    unit            TEXT    NOT NULL CHECK (length(unit) = 64 AND unit NOT GLOB '*[^0-9a-f]*'),
    arm             TEXT    NOT NULL CHECK (arm <> ''),
    community       TEXT    CHECK (community <> ''),
    trial_version   INTEGER NOT NULL CHECK (trial_version >= 1),
    exposed_at      TEXT    NOT NULL,
    source          TEXT    NOT NULL CHECK (source IN ('single', 'bulk', 'explicit')),
    excluded        INTEGER NOT NULL CHECK (excluded IN (0, 1)),
    excluded_reason TEXT,
    CHECK ((excluded = 1) = (excluded_reason IS NOT NULL)),
    PRIMARY KEY (trial_id, unit)
) STRICT, WITHOUT ROWID;

-- Per-arm counts of the analysis population.
CREATE INDEX exposures_arm_idx ON exposures (trial_id, arm) WHERE excluded = 0;

INSERT INTO change_counters (name, value) VALUES ('trials', 0);
