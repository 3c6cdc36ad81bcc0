-- Commonlab schema, part 8: survey instruments as published, campaigns that
-- invite units to a wave, and responses stored under the unit's pseudonym
-- only.

-- A published instrument version, as its TOML source. Never changed:
-- answers keep the version they were given under, and a changed instrument
-- is published as a new version.
CREATE TABLE survey_instruments (
    key          TEXT        NOT NULL CHECK (key <> ''),
    version      BIGINT      NOT NULL CHECK (version >= 1),
    source       TEXT        NOT NULL CHECK (source <> ''),
    hash         TEXT        NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    published_at TIMESTAMPTZ NOT NULL,
    published_by TEXT        NOT NULL CHECK (published_by <> ''),
    reason       TEXT        NOT NULL CHECK (reason <> ''),
    PRIMARY KEY (key, version)
);

CREATE FUNCTION survey_instruments_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a published survey instrument is never changed (%): publish a new version', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER survey_instruments_no_update_or_delete
    BEFORE UPDATE OR DELETE ON survey_instruments
    FOR EACH ROW EXECUTE FUNCTION survey_instruments_immutable();

CREATE TRIGGER survey_instruments_no_truncate
    BEFORE TRUNCATE ON survey_instruments
    FOR EACH STATEMENT EXECUTE FUNCTION survey_instruments_immutable();

-- A wave of an instrument: who may answer (anyone holding a link signed for
-- it) and when. `trial_key` and `wave` tie the answers to a trial's arms at
-- analysis time (never shown to the respondent).
CREATE TABLE survey_campaigns (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        TEXT        NOT NULL UNIQUE CHECK (key <> ''),
    instrument TEXT        NOT NULL,
    version    BIGINT      NOT NULL,
    trial_key  TEXT        CHECK (trial_key <> ''),
    wave       TEXT        NOT NULL CHECK (wave <> ''),
    opens_at   TIMESTAMPTZ NOT NULL,
    closes_at  TIMESTAMPTZ NOT NULL CHECK (closes_at > opens_at),
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT        NOT NULL CHECK (created_by <> ''),
    reason     TEXT        NOT NULL CHECK (reason <> ''),
    FOREIGN KEY (instrument, version) REFERENCES survey_instruments (key, version)
);

-- One response per unit per campaign. `page` is the next page to answer;
-- `answers` every answer so far by item key; `orders` the item order shown
-- on each randomised page. A declined response keeps nothing but the
-- refusal (no answers).
CREATE TABLE survey_responses (
    campaign_id     BIGINT      NOT NULL REFERENCES survey_campaigns (id),
    unit            TEXT        NOT NULL CHECK (unit ~ '^[0-9a-f]{64}$'),
    status          TEXT        NOT NULL CHECK (status IN ('started', 'completed', 'declined')),
    language        TEXT        NOT NULL CHECK (language <> ''),
    consent_version TEXT        NOT NULL CHECK (consent_version <> ''),
    page            BIGINT      NOT NULL CHECK (page >= 0),
    answers         JSONB       NOT NULL CHECK (jsonb_typeof(answers) = 'object'),
    orders          JSONB       NOT NULL CHECK (jsonb_typeof(orders) = 'object'),
    started_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    completed_at    TIMESTAMPTZ,
    PRIMARY KEY (campaign_id, unit),
    CHECK (status <> 'declined' OR answers = '{}'::jsonb)
);

-- Erasure finds a unit's responses.
CREATE INDEX survey_responses_unit_idx ON survey_responses (unit);
