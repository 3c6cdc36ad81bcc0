-- Commonlab schema, part 10 (SQLite twin of migrations/postgres/0010): the
-- units a survey campaign invited, under their pseudonym only. The
-- denominator of response rates (by arm, by community); the personal links
-- themselves are signed tokens and are not stored.

CREATE TABLE survey_invitations (
    campaign_id INTEGER NOT NULL REFERENCES survey_campaigns (id),
    unit        TEXT    NOT NULL CHECK (length(unit) = 64 AND unit NOT GLOB '*[^0-9a-f]*'),
    -- The unit's community, when the researcher gave it with the invitation.
    community   TEXT    CHECK (community <> ''),
    invited_at  TEXT    NOT NULL,
    invited_by  TEXT    NOT NULL CHECK (invited_by <> ''),
    reason      TEXT    NOT NULL CHECK (reason <> ''),
    PRIMARY KEY (campaign_id, unit)
) STRICT;

-- Erasure finds a unit's invitations.
CREATE INDEX survey_invitations_unit_idx ON survey_invitations (unit);
