-- Commonlab schema, part 4 (SQLite twin of migrations/postgres/0004):
-- per-metric aggregates of concluded trials. Computed from the raw events
-- when a trial concludes, so that its analysis survives the retention job
-- (which deletes raw events) and is reproducible from the database alone.
-- `cells` is the JSON array of per-(arm, community) sufficient statistics
-- (`MetricCell`); no unit appears in it.
CREATE TABLE metric_snapshots (
    trial_id    INTEGER NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    metric      TEXT    NOT NULL CHECK (metric <> ''),
    spec_hash   TEXT    NOT NULL
        CHECK (length(spec_hash) = 64 AND spec_hash NOT GLOB '*[^0-9a-f]*'),
    as_of       TEXT    NOT NULL,
    computed_at TEXT    NOT NULL,
    cells       TEXT    NOT NULL CHECK (json_type(cells) = 'array'),
    PRIMARY KEY (trial_id, metric)
) STRICT;
