-- Commonlab schema, part 4: per-metric aggregates of concluded trials.
-- Computed from the raw events when a trial concludes, so that its analysis
-- survives the retention job (which deletes raw events) and is reproducible
-- from the database alone. `cells` is the JSON array of per-(arm,
-- community) sufficient statistics (`MetricCell`); no unit appears in it.
CREATE TABLE metric_snapshots (
    trial_id    BIGINT      NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    metric      TEXT        NOT NULL CHECK (metric <> ''),
    spec_hash   TEXT        NOT NULL CHECK (spec_hash ~ '^[0-9a-f]{64}$'),
    as_of       TIMESTAMPTZ NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL,
    cells       JSONB       NOT NULL CHECK (jsonb_typeof(cells) = 'array'),
    CONSTRAINT metric_snapshots_pkey PRIMARY KEY (trial_id, metric)
);
