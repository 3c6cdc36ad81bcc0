-- Commonlab schema, part 11 (SQLite twin of migrations/postgres/0011):
-- what community designs need beyond one exposure per unit.
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
    trial_id  INTEGER NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    community TEXT    NOT NULL CHECK (community <> ''),
    period    INTEGER NOT NULL CHECK (period >= 0),
    arm       TEXT    NOT NULL CHECK (arm <> ''),
    exposures INTEGER NOT NULL CHECK (exposures >= 1),
    first_at  TEXT    NOT NULL,
    last_at   TEXT    NOT NULL,
    PRIMARY KEY (trial_id, community, period, arm),
    CHECK (first_at <= last_at)
) STRICT, WITHOUT ROWID;

ALTER TABLE metric_snapshots ADD COLUMN communities TEXT
    CHECK (communities IS NULL OR json_type(communities) = 'object');
