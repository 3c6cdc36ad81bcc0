-- Commonlab schema, part 12: the web console's sessions. A session is made
-- by signing in with an API key and ends at its expiry, at sign-out, or
-- when its key is revoked (the lookup joins the key and refuses a revoked
-- one), on every replica at once since every replica reads this table.
--
-- `id` is HMAC-SHA256 (key derived from the study key) of the cookie's
-- secret, in hex: the cookie itself is never stored, so a reader of the
-- database cannot take over a session.
CREATE TABLE console_sessions (
    id         TEXT        NOT NULL PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    key_id     TEXT        NOT NULL REFERENCES api_keys (id),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL CHECK (expires_at > created_at),
    ended_at   TIMESTAMPTZ,
    -- Why it ended early: 'sign-out' or 'replaced' (the key opened more
    -- sessions than it may hold at once).
    end_reason TEXT        CHECK (end_reason IN ('sign-out', 'replaced')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);

-- A key's live sessions (the per-key bound), and the audit log by time.
CREATE INDEX console_sessions_key_idx ON console_sessions (key_id, created_at);
CREATE INDEX console_sessions_created_idx ON console_sessions (created_at);
