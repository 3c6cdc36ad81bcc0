-- Commonlab schema, part 8 (SQLite twin of migrations/postgres/0008):
-- survey instruments as published, campaigns that invite units to a wave,
-- and responses stored under the unit's pseudonym only.

-- A published instrument version, as its TOML source. Never changed:
-- answers keep the version they were given under, and a changed instrument
-- is published as a new version.
CREATE TABLE survey_instruments (
    key          TEXT    NOT NULL CHECK (key <> ''),
    version      INTEGER NOT NULL CHECK (version >= 1),
    source       TEXT    NOT NULL CHECK (source <> ''),
    hash         TEXT    NOT NULL CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    published_at TEXT    NOT NULL,
    published_by TEXT    NOT NULL CHECK (published_by <> ''),
    reason       TEXT    NOT NULL CHECK (reason <> ''),
    PRIMARY KEY (key, version)
) STRICT;

CREATE TRIGGER survey_instruments_no_update
    BEFORE UPDATE ON survey_instruments
BEGIN
    SELECT RAISE(ABORT, 'a published survey instrument is never changed: publish a new version');
END;

CREATE TRIGGER survey_instruments_no_delete
    BEFORE DELETE ON survey_instruments
BEGIN
    SELECT RAISE(ABORT, 'a published survey instrument is never deleted');
END;

-- A wave of an instrument: who may answer (anyone holding a link signed for
-- it) and when. `trial_key` and `wave` tie the answers to a trial's arms at
-- analysis time (never shown to the respondent).
CREATE TABLE survey_campaigns (
    id         INTEGER PRIMARY KEY,
    key        TEXT    NOT NULL UNIQUE CHECK (key <> ''),
    instrument TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    trial_key  TEXT    CHECK (trial_key <> ''),
    wave       TEXT    NOT NULL CHECK (wave <> ''),
    opens_at   TEXT    NOT NULL,
    closes_at  TEXT    NOT NULL CHECK (closes_at > opens_at),
    created_at TEXT    NOT NULL,
    created_by TEXT    NOT NULL CHECK (created_by <> ''),
    reason     TEXT    NOT NULL CHECK (reason <> ''),
    FOREIGN KEY (instrument, version) REFERENCES survey_instruments (key, version)
) STRICT;

-- One response per unit per campaign. `page` is the next page to answer;
-- `answers` every answer so far by item key; `orders` the item order shown
-- on each randomised page. A declined response keeps nothing but the
-- refusal (no answers).
CREATE TABLE survey_responses (
    campaign_id     INTEGER NOT NULL REFERENCES survey_campaigns (id),
    unit            TEXT    NOT NULL CHECK (length(unit) = 64 AND unit NOT GLOB '*[^0-9a-f]*'),
    status          TEXT    NOT NULL CHECK (status IN ('started', 'completed', 'declined')),
    language        TEXT    NOT NULL CHECK (language <> ''),
    consent_version TEXT    NOT NULL CHECK (consent_version <> ''),
    page            INTEGER NOT NULL CHECK (page >= 0),
    answers         TEXT    NOT NULL CHECK (json_type(answers) = 'object'),
    orders          TEXT    NOT NULL CHECK (json_type(orders) = 'object'),
    started_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    completed_at    TEXT,
    PRIMARY KEY (campaign_id, unit),
    CHECK (status <> 'declined' OR answers = '{}')
) STRICT;

-- Erasure finds a unit's responses.
CREATE INDEX survey_responses_unit_idx ON survey_responses (unit);
