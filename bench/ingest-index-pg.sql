-- Index on the event time, PostgreSQL side (docs/benchmarks.md, "Index on
-- the event time"): builds 1M events in schema idx_exp, then times the
-- store's retention and export queries. Run, then add or drop an index and
-- run the second part again:
--   psql "$URL" -v part=setup -f bench/ingest-index-pg.sql
--   psql "$URL" -v part=measure -f bench/ingest-index-pg.sql
--   psql "$URL" -c "CREATE INDEX events_ts_idx ON idx_exp.events (ts)"   # or USING brin (ts)
--   psql "$URL" -v part=measure -f bench/ingest-index-pg.sql
--   psql "$URL" -c "DROP SCHEMA idx_exp CASCADE"
-- WAL per ingested row: psql "$URL" -v part=wal -f bench/ingest-index-pg.sql
\if :{?part}
\else
\set part measure
\endif
SELECT :'part' = 'setup' AS is_setup, :'part' = 'wal' AS is_wal \gset
\if :is_setup
DROP SCHEMA IF EXISTS idx_exp CASCADE;
CREATE SCHEMA idx_exp;
SET search_path = idx_exp;
-- The table and indexes of migrations/postgres/0003_events.sql.
CREATE TABLE events (
    ts          TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    event_id    UUID        NOT NULL,
    unit        TEXT        NOT NULL
        CHECK (octet_length(unit) = 64 AND unit !~ '[^0-9a-f]'),
    name        TEXT        NOT NULL CHECK (name <> ''),
    community   TEXT        CHECK (community <> ''),
    properties  JSONB       NOT NULL CHECK (jsonb_typeof(properties) = 'object'),
    CONSTRAINT events_pkey PRIMARY KEY (event_id)
);
CREATE INDEX events_unit_name_ts_idx ON events (unit, name, ts);
-- 1M events over ~347 days in arrival order: ts = arrival - up to 10 min
-- (client delay), 1% late by up to 3 days (offline clients).
INSERT INTO events
SELECT t - (random() * interval '10 minutes')
         - CASE WHEN random() < 0.01 THEN random() * interval '3 days' ELSE interval '0' END,
       t, gen_random_uuid(),
       encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'),
       (ARRAY['contribution_created','thanks_given','page_viewed','session_started'])[1 + (random()*3)::int],
       'wiki-' || (random()*11)::int,
       jsonb_build_object('edits', (random()*9)::int, 'mobile', random() < 0.5)
FROM (SELECT timestamptz '2026-01-01' + g * interval '30 seconds' AS t
      FROM generate_series(1, 1000000) g) s;
VACUUM ANALYZE events;
\elif :is_wal
SET search_path = idx_exp;
CHECKPOINT;
SELECT pg_current_wal_insert_lsn() AS l0 \gset
INSERT INTO events SELECT timestamptz '2027-06-01' + (1*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (2*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (3*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (4*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (5*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (6*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (7*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (8*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (9*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (10*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (11*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (12*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (13*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (14*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (15*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (16*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (17*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (18*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (19*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
INSERT INTO events SELECT timestamptz '2027-06-01' + (20*500+g) * interval '30 ms' - random()*interval '10 minutes', now(), gen_random_uuid(), encode(sha256(('m' || (random() * 200000)::int)::bytea), 'hex'), 'page_viewed', 'wiki-1', '{"edits":1}'::jsonb FROM generate_series(1,500) g ON CONFLICT DO NOTHING;
SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'l0') / 20) AS wal_per_500_row_commit, round(pg_wal_lsn_diff(pg_current_wal_insert_lsn(), :'l0') / 10000) AS wal_bytes_per_row;
\else
SET search_path = idx_exp;
\timing on
PREPARE del(timestamptz, bigint) AS DELETE FROM events WHERE ctid = ANY(ARRAY(SELECT ctid FROM events WHERE ts < $1 LIMIT $2));
PREPARE page0(bigint) AS SELECT event_id::text, ts, received_at, unit, name, community, properties FROM events WHERE TRUE ORDER BY ts, event_id LIMIT $1;
PREPARE pagek(timestamptz, text, bigint) AS SELECT event_id::text, ts, received_at, unit, name, community, properties FROM events WHERE TRUE AND (ts, event_id) > ($1, CAST($2 AS uuid)) ORDER BY ts, event_id LIMIT $3;
SELECT min(ts) AS mn, percentile_disc(0.1) WITHIN GROUP (ORDER BY ts) AS p10, percentile_disc(0.5) WITHIN GROUP (ORDER BY ts) AS p50 FROM events \gset
\echo == sweep with nothing to delete (one round, the steady state of each hourly sweep)
BEGIN; EXECUTE del(:'mn'::timestamptz - interval '1 day', 10000); ROLLBACK;
BEGIN; EXECUTE del(:'mn'::timestamptz - interval '1 day', 10000); ROLLBACK;
\echo == catch-up: delete the oldest 10% (100k rows) in rounds of 10,000 (11 rounds)
BEGIN;
EXECUTE del(:'p10', 10000); EXECUTE del(:'p10', 10000); EXECUTE del(:'p10', 10000); EXECUTE del(:'p10', 10000);
EXECUTE del(:'p10', 10000); EXECUTE del(:'p10', 10000); EXECUTE del(:'p10', 10000); EXECUTE del(:'p10', 10000);
EXECUTE del(:'p10', 10000); EXECUTE del(:'p10', 10000); EXECUTE del(:'p10', 10000);
ROLLBACK;
\echo == export: first page, and a page from the middle (5,000 rows)
EXECUTE page0(5000) \g /dev/null
EXECUTE page0(5000) \g /dev/null
EXECUTE pagek(:'p50', '00000000-0000-0000-0000-000000000000', 5000) \g /dev/null
EXECUTE pagek(:'p50', '00000000-0000-0000-0000-000000000000', 5000) \g /dev/null
\timing off
\echo == plans
EXPLAIN (COSTS OFF) EXECUTE del(:'mn'::timestamptz - interval '1 day', 10000);
EXPLAIN (COSTS OFF) EXECUTE pagek(:'p50', '00000000-0000-0000-0000-000000000000', 5000);
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE del(:'mn'::timestamptz - interval '1 day', 10000);
EXPLAIN (COSTS OFF) EXECUTE pagek(:'p50', '00000000-0000-0000-0000-000000000000', 5000);
\timing on
\echo == generic plans: sweep with nothing to delete, middle export page
BEGIN; EXECUTE del(:'mn'::timestamptz - interval '1 day', 10000); ROLLBACK;
EXECUTE pagek(:'p50', '00000000-0000-0000-0000-000000000000', 5000) \g /dev/null
\endif
