-- Query shapes for a stepped wedge's per-(community, member) pass on
-- PostgreSQL: the first step of `Store::community_period_cells`, before
-- (two aggregates per window: active, and y) and after (one: y, NULL when
-- the member had no event in the window), on the metric benchmark's data
-- (schema bench_metrics; generate it with
-- `cargo bench -p commonlab-store --bench metrics` first):
--
--   psql postgres://postgres@127.0.0.1:5432/test -f bench/stepped-wedge-shapes-pg.sql
--
-- Each shape runs three times, alternately; the plans at the end.
SET search_path = bench_metrics;
\timing on
\set span 'v.community IN (''c0'', ''c1'', ''c2'', ''c3'') AND v.ts >= ''2026-11-22Z'' AND v.ts < ''2027-03-02Z'''
\set w0 'v.ts >= ''2026-11-22Z'' AND v.ts < ''2026-12-12Z'''
\set w1 'v.ts >= ''2026-12-12Z'' AND v.ts < ''2027-01-01Z'''
\set w2 'v.ts >= ''2027-01-01Z'' AND v.ts < ''2027-01-21Z'''
\set w3 'v.ts >= ''2027-01-21Z'' AND v.ts < ''2027-02-10Z'''
\set w4 'v.ts >= ''2027-02-10Z'' AND v.ts < ''2027-03-02Z'''
\set hit 'v.name IN (''contribution_created'')'
\set before 'SELECT count(*), sum(y0 + y1 + y2 + y3 + y4), sum(a0 + a1 + a2 + a3 + a4) FROM (SELECT v.community, v.unit, max(CASE WHEN ' :w0 ' THEN 1 ELSE 0 END) AS a0, (max(CASE WHEN ' :w0 ' AND ' :hit ' THEN 1.0 ELSE 0.0 END))::float8 AS y0, max(CASE WHEN ' :w1 ' THEN 1 ELSE 0 END) AS a1, (max(CASE WHEN ' :w1 ' AND ' :hit ' THEN 1.0 ELSE 0.0 END))::float8 AS y1, max(CASE WHEN ' :w2 ' THEN 1 ELSE 0 END) AS a2, (max(CASE WHEN ' :w2 ' AND ' :hit ' THEN 1.0 ELSE 0.0 END))::float8 AS y2, max(CASE WHEN ' :w3 ' THEN 1 ELSE 0 END) AS a3, (max(CASE WHEN ' :w3 ' AND ' :hit ' THEN 1.0 ELSE 0.0 END))::float8 AS y3, max(CASE WHEN ' :w4 ' THEN 1 ELSE 0 END) AS a4, (max(CASE WHEN ' :w4 ' AND ' :hit ' THEN 1.0 ELSE 0.0 END))::float8 AS y4 FROM events v WHERE v.community IS NOT NULL AND ' :span ' GROUP BY v.community, v.unit) g'
\set after 'SELECT count(*), sum(coalesce(y0, 0) + coalesce(y1, 0) + coalesce(y2, 0) + coalesce(y3, 0) + coalesce(y4, 0)), sum((y0 IS NOT NULL)::int + (y1 IS NOT NULL)::int + (y2 IS NOT NULL)::int + (y3 IS NOT NULL)::int + (y4 IS NOT NULL)::int) FROM (SELECT v.community, v.unit, (max(CASE WHEN ' :w0 ' THEN CASE WHEN ' :hit ' THEN 1.0 ELSE 0.0 END END))::float8 AS y0, (max(CASE WHEN ' :w1 ' THEN CASE WHEN ' :hit ' THEN 1.0 ELSE 0.0 END END))::float8 AS y1, (max(CASE WHEN ' :w2 ' THEN CASE WHEN ' :hit ' THEN 1.0 ELSE 0.0 END END))::float8 AS y2, (max(CASE WHEN ' :w3 ' THEN CASE WHEN ' :hit ' THEN 1.0 ELSE 0.0 END END))::float8 AS y3, (max(CASE WHEN ' :w4 ' THEN CASE WHEN ' :hit ' THEN 1.0 ELSE 0.0 END END))::float8 AS y4 FROM events v WHERE v.community IS NOT NULL AND ' :span ' GROUP BY v.community, v.unit) g'
\echo before
:before;
\echo after
:after;
\echo before
:before;
\echo after
:after;
\echo before
:before;
\echo after
:after;
EXPLAIN (ANALYZE, BUFFERS) :before;
EXPLAIN (ANALYZE, BUFFERS) :after;
