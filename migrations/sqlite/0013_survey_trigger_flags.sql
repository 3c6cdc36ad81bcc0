-- Commonlab schema, part 13 (SQLite twin of migrations/postgres/0013): a
-- campaign may name a survey-trigger flag, a flag key the server answers
-- over OFREP for the units the campaign invited, with their personal link
-- (docs/surveys.md, "In-app"). NULL: the campaign sends links only.

ALTER TABLE survey_campaigns ADD COLUMN trigger_flag TEXT
    CHECK (trigger_flag IS NULL OR (length(trigger_flag) BETWEEN 1 AND 200
        AND trigger_flag NOT GLOB '*[^A-Za-z0-9_.-]*'
        AND substr(trigger_flag, 1, 1) NOT IN ('-', '.')));

-- Replicas load the campaigns with a trigger flag on every poll.
CREATE INDEX survey_campaigns_trigger_flag_idx ON survey_campaigns (trigger_flag)
    WHERE trigger_flag IS NOT NULL;
