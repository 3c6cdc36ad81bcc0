-- Commonlab schema, part 6 (SQLite twin of migrations/postgres/0006): trial
-- events of action 'deviation' (a change to a flag that a running trial
-- controls, recorded with the flag-set revision that made it).
--
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt with the
-- wider CHECK and its rows copied unchanged. DROP TABLE removes the
-- append-only triggers before its implicit delete, so they do not fire;
-- they are created again on the new table. Nothing references
-- trial_events.

CREATE TABLE trial_events_0006 (
    trial_id   INTEGER NOT NULL REFERENCES trials (id) ON DELETE RESTRICT,
    seq        INTEGER NOT NULL CHECK (seq >= 1),
    action     TEXT    NOT NULL
        CHECK (action IN ('create', 'update', 'start', 'stop', 'conclude', 'archive', 'amend', 'deviation')),
    actor      TEXT    NOT NULL CHECK (actor <> ''),
    reason     TEXT    NOT NULL CHECK (reason <> ''),
    spec_hash  TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    created_at TEXT    NOT NULL,
    PRIMARY KEY (trial_id, seq)
) STRICT;

INSERT INTO trial_events_0006 (trial_id, seq, action, actor, reason, spec_hash, version, created_at)
    SELECT trial_id, seq, action, actor, reason, spec_hash, version, created_at FROM trial_events;

DROP TABLE trial_events;

ALTER TABLE trial_events_0006 RENAME TO trial_events;

CREATE TRIGGER trial_events_no_update
    BEFORE UPDATE ON trial_events
BEGIN
    SELECT RAISE(ABORT, 'trial_events is an append-only audit log: UPDATE is not allowed');
END;

CREATE TRIGGER trial_events_no_delete
    BEFORE DELETE ON trial_events
BEGIN
    SELECT RAISE(ABORT, 'trial_events is an append-only audit log: DELETE is not allowed');
END;
