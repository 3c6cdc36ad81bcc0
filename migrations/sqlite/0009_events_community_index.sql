-- Commonlab schema, part 9 (SQLite twin of migrations/postgres/0009): an index on the events'
-- community for the rows of community designs (issue 12).
--
-- A cluster or stepped-wedge trial randomises communities and records one
-- exposure per community, so its metrics are computed from the events of
-- the design's communities in each period's window, grouped per (community,
-- member): `Store::community_period_cells` (store/src/design_rows.rs).
-- Without this index that statement reads every event row of the span
-- (`community` is in no other index) and sorts them by member: 81-92 s on
-- the 10M-event benchmark with SQLite. With it, the statement is one range
-- scan per community of a covering index already in (community, unit)
-- order, with no sort and no table access for metrics without property
-- filters or summed values: 26.6 s against 89.2 s at the same machine load
-- (docs/benchmarks.md, "Rows of a stepped wedge").
-- `name` is in the key so that the scan covers the metric's event test.
--
-- Cost: one more entry per ingested event (about 100 bytes: the community
-- and the 64-character pseudonym). Building it blocks writes to events
-- while it runs, a few seconds per million events.

CREATE INDEX events_community_unit_ts_idx ON events (community, unit, ts, name)
    WHERE community IS NOT NULL;
