-- Commonlab schema, part 10: the units a survey campaign invited, under
-- their pseudonym only. The denominator of response rates (by arm, by
-- community); the personal links themselves are signed tokens and are not
-- stored.

CREATE TABLE survey_invitations (
    campaign_id BIGINT      NOT NULL REFERENCES survey_campaigns (id),
    unit        TEXT        NOT NULL CHECK (unit ~ '^[0-9a-f]{64}$'),
    -- The unit's community, when the researcher gave it with the invitation.
    community   TEXT        CHECK (community <> ''),
    invited_at  TIMESTAMPTZ NOT NULL,
    invited_by  TEXT        NOT NULL CHECK (invited_by <> ''),
    reason      TEXT        NOT NULL CHECK (reason <> ''),
    PRIMARY KEY (campaign_id, unit)
);

-- Erasure finds a unit's invitations.
CREATE INDEX survey_invitations_unit_idx ON survey_invitations (unit);
