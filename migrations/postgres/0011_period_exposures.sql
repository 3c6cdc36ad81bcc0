-- Commonlab schema, part 11: what community designs need beyond one
-- exposure per unit.
--
-- period_exposures: per (trial, community, period, arm served), how many
-- exposures a community design's evaluations served and the first and last
-- of them. The exposure writer adds its batch's counts (upsert), so the
-- schedule-adherence check sees every period, not only each community's
-- first exposure. Per-community aggregates: no unit, no pseudonym.
--
-- metric_snapshots.communities: the community × period cells (and the
-- count of members left out) of a community design's metric, stored in the
-- transaction that concludes the trial; NULL for member designs.
CREATE TABLE period_exposures (
    trial_id  BIGINT      NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    community TEXT        NOT NULL CHECK (community <> ''),
    period    BIGINT      NOT NULL CHECK (period >= 0),
    arm       TEXT        NOT NULL CHECK (arm <> ''),
    exposures BIGINT      NOT NULL CHECK (exposures >= 1),
    first_at  TIMESTAMPTZ NOT NULL,
    last_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT period_exposures_pkey PRIMARY KEY (trial_id, community, period, arm),
    CONSTRAINT period_exposures_ordered CHECK (first_at <= last_at)
);

ALTER TABLE metric_snapshots ADD COLUMN communities JSONB
    CHECK (communities IS NULL OR jsonb_typeof(communities) = 'object');
