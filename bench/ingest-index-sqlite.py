#!/usr/bin/env python3
"""Index on the event time, SQLite side (docs/benchmarks.md, "Index on the
event time"), with the store's own SQL and durability (WAL,
synchronous=FULL):

    python3 bench/ingest-index-sqlite.py setup /tmp/base.db       # 1M events (EVENTS=...; minutes)
    python3 bench/ingest-index-sqlite.py measure /tmp/base.db none  # or ts, ts_id
    python3 bench/ingest-index-sqlite.py wal /tmp/base.db none      # WAL pages per commit

`measure` and `wal` work on a copy of the base file, with the index variant
added (none, (ts), or (ts, event_id)); the base must not have migration
0005's index (setup creates only migration 0003's schema).
"""
import datetime, hashlib, json, os, random, shutil, sqlite3, sys, time, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "migrations", "sqlite", "0003_events.sql")


def setup(path):
    if os.path.exists(path): os.remove(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
    db.executescript(open(SCHEMA).read())
    random.seed(1)
    units = [hashlib.sha256(f"m{i}".encode()).hexdigest() for i in range(200001)]
    names = ['contribution_created','thanks_given','page_viewed','session_started']
    t0 = datetime.datetime(2026,1,1,tzinfo=datetime.timezone.utc)
    def fmt(t): return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    db.execute("BEGIN")
    rows=[]
    for g in range(1, int(os.environ.get("EVENTS", "1000000")) + 1):
        t = t0 + datetime.timedelta(seconds=30*g)
        ts = t - datetime.timedelta(seconds=random.random()*600)
        if random.random() < 0.01: ts -= datetime.timedelta(seconds=random.random()*3*86400)
        rows.append((uuid.uuid4().bytes, units[random.randint(0,200000)], f"wiki-{random.randint(0,11)}", random.choice(names), fmt(ts), fmt(t), json.dumps({"edits": random.randint(0,9), "mobile": random.random()<0.5})))
        if len(rows) == 50000:
            db.executemany("INSERT INTO events (event_id, unit, community, name, ts, received_at, properties) VALUES (?,?,?,?,?,?,?)", rows); rows=[]
    if rows:
        db.executemany("INSERT INTO events (event_id, unit, community, name, ts, received_at, properties) VALUES (?,?,?,?,?,?,?)", rows)
    db.execute("COMMIT")
    db.execute("ANALYZE")
    print(db.execute("select count(*) from events").fetchone(), os.path.getsize(path)//1e6, "MB")


def measure(base, variant):
    path = f"{base}.{variant}.measure"
    shutil.copy(base, path)
    for ext in ("-wal", "-shm"):
        if os.path.exists(path + ext): os.remove(path + ext)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
    ddl = {"none": None, "ts": "CREATE INDEX events_ts_idx ON events (ts)",
           "ts_id": "CREATE INDEX events_ts_idx ON events (ts, event_id)"}[variant]
    if ddl:
        t = time.perf_counter(); db.execute(ddl); db.execute("ANALYZE"); print(f"create index: {time.perf_counter()-t:.1f} s")
    def timed(label, f, n=1):
        best = None
        for _ in range(n):
            t = time.perf_counter(); r = f(); d = time.perf_counter() - t
            best = d if best is None else min(best, d)
        print(f"{label}: {best*1000:.1f} ms"); return r
    mn = db.execute("SELECT min(ts) FROM events").fetchone()[0]
    # The oldest 10% (sorted outside the timings).
    p10 = db.execute("SELECT ts FROM events ORDER BY ts LIMIT 1 OFFSET (SELECT count(*) / 10 FROM events)").fetchone()[0]
    DEL = "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE ts < ? LIMIT ?)"
    print("plan sweep:", db.execute("EXPLAIN QUERY PLAN SELECT rowid FROM events WHERE ts < ? LIMIT ?", ("2026", 10000)).fetchall())
    def sweep(cutoff):
        def run():
            db.execute("BEGIN IMMEDIATE"); total = 0
            while True:
                n = db.execute(DEL, (cutoff, 10000)).rowcount; total += n
                if n < 10000: break
            db.execute("ROLLBACK"); return total
        return run
    timed("sweep, nothing to delete", sweep("2025-01-01T00:00:00.000000Z"), 3)
    n = timed(f"catch-up sweep (oldest ~10%, rounds of 10,000)", sweep(p10), 1)
    print("  deleted", n)
    COLS = "unit, community, name, ts, received_at, properties"
    P0 = f"SELECT event_id, {COLS} FROM events WHERE 1 = 1 ORDER BY ts, event_id LIMIT ?"
    PK = f"SELECT event_id, {COLS} FROM events WHERE 1 = 1 AND (ts, event_id) > (?, ?) ORDER BY ts, event_id LIMIT ?"
    print("plan page:", db.execute("EXPLAIN QUERY PLAN " + PK, ("2026", b"", 5000)).fetchall())
    timed("export first page (5,000)", lambda: db.execute(P0, (5000,)).fetchall(), 2)
    timed("export middle page (5,000)", lambda: db.execute(PK, ("2026-06-24T00:00:00.000000Z", b"\0"*16, 5000)).fetchall(), 2)
    # Ingestion: 100 durable transactions of 500 random-id rows (ts now-ish, appended), as the store writes them.
    units = [hashlib.sha256(f"m{i}".encode()).hexdigest() for i in range(200001)]
    names = ['contribution_created','thanks_given','page_viewed','session_started']
    t0 = datetime.datetime(2027,1,1,tzinfo=datetime.timezone.utc)
    def fmt(t): return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    batches = []
    for b in range(int(os.environ.get("TX", "100"))):
        rows = []
        for i in range(500):
            t = t0 + datetime.timedelta(milliseconds=b*500+i)
            rows.append((uuid.uuid4().bytes, random.choice(units), "wiki-1", random.choice(names), fmt(t - datetime.timedelta(seconds=random.random()*600)), fmt(t), '{"edits":1}'))
        rows.sort()
        batches.append(rows)
    INS = "INSERT INTO events (event_id, unit, community, name, ts, received_at, properties) VALUES " + ",".join(["(?,?,?,?,?,?,?)"]*500) + " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    t = time.perf_counter()
    for rows in batches:
        db.execute("BEGIN IMMEDIATE")
        db.execute(INS, [x for r in rows for x in r]).fetchall()
        db.execute("COMMIT")
    d = time.perf_counter() - t
    print(f"ingest: {len(batches)*500/d:,.0f} rows/s ({len(batches)} tx of 500)")
    db.close(); os.remove(path)
    for ext in ("-wal", "-shm"):
        if os.path.exists(path + ext): os.remove(path + ext)


def wal(base, variant):
    path = f"{base}.{variant}.wal"
    shutil.copy(base, path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=FULL")
    ddl = {"none": None, "ts": "CREATE INDEX events_ts_idx ON events (ts)",
           "ts_id": "CREATE INDEX events_ts_idx ON events (ts, event_id)"}[variant]
    if ddl: db.execute(ddl)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA wal_autocheckpoint=0")
    random.seed(7)
    units = [hashlib.sha256(f"m{i}".encode()).hexdigest() for i in range(200001)]
    t0 = datetime.datetime(2027,1,1,tzinfo=datetime.timezone.utc)
    fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    INS = "INSERT INTO events (event_id, unit, community, name, ts, received_at, properties) VALUES " + ",".join(["(?,?,?,?,?,?,?)"]*500) + " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    res = {}
    for size in (500, 2000):
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for b in range(10):
            db.execute("BEGIN IMMEDIATE")
            for k in range(size // 500):
                rows = []
                for i in range(500):
                    t = t0 + datetime.timedelta(milliseconds=(b*size + k*500 + i)*10)
                    rows.append((uuid.UUID(int=random.getrandbits(128), version=4).bytes, random.choice(units), "wiki-1", "page_viewed", fmt(t - datetime.timedelta(seconds=random.random()*600)), fmt(t), '{"edits":1}'))
                rows.sort()
                db.execute(INS, [x for r in rows for x in r]).fetchall()
            db.execute("COMMIT")
        frames = (os.path.getsize(path + "-wal") - 32) // (4096 + 24)
        res[size] = frames / 10
    print(variant, {f"{k} events/commit": f"{v:.0f} pages/commit ({v/k:.2f}/event)" for k, v in res.items()})
    db.close()
    for ext in ("", "-wal", "-shm"):
        if os.path.exists(path + ext): os.remove(path + ext)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "setup":
        setup(sys.argv[2])
    elif cmd == "measure":
        measure(sys.argv[2], sys.argv[3])
    elif cmd == "wal":
        wal(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
