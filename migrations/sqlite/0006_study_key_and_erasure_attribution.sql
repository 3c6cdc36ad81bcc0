-- Commonlab schema, part 6 (SQLite twin of migrations/postgres/0006): the
-- study key's fingerprint, who erased a member and why, who changed an API
-- key and why, and the counters replicas poll to forget what they cached
-- about members.

-- The fingerprint of the study key the stored pseudonyms were made with
-- (16 hex digits of SHA-256("commonlab-study-key:" || key): it identifies
-- the key and reveals nothing useful about it; the key itself is never
-- stored). Recorded at first use; a server, an import or an erasure with
-- another key is refused, since its pseudonyms would match nothing stored.
-- One row at most, never changed: rotating the key would orphan every
-- pseudonym (see the triggers below).
CREATE TABLE study_key (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT    NOT NULL CHECK (length(fingerprint) = 16 AND fingerprint NOT GLOB '*[^0-9a-f]*'),
    recorded_at TEXT    NOT NULL
) STRICT;

CREATE TRIGGER study_key_no_update
    BEFORE UPDATE ON study_key
BEGIN
    SELECT RAISE(ABORT, 'study_key is recorded once: UPDATE is not allowed');
END;

CREATE TRIGGER study_key_no_delete
    BEFORE DELETE ON study_key
BEGIN
    SELECT RAISE(ABORT, 'study_key is recorded once: DELETE is not allowed');
END;

-- Who erased a member and why. NULL only in entries from before this
-- migration; the store requires both for every new erasure.
ALTER TABLE erasure_log ADD COLUMN actor TEXT CHECK (actor <> '');
ALTER TABLE erasure_log ADD COLUMN reason TEXT CHECK (reason <> '');

-- Why a key was created, and who revoked it and why (NULL for keys created
-- or revoked before this migration).
ALTER TABLE api_keys ADD COLUMN created_reason TEXT CHECK (created_reason <> '');
ALTER TABLE api_keys ADD COLUMN revoked_by TEXT CHECK (revoked_by <> '');
ALTER TABLE api_keys ADD COLUMN revoked_reason TEXT CHECK (revoked_reason <> '');

-- Bumped by every erasure and every consent decision, in the same
-- transaction: replicas poll them and drop what they cached about members
-- (arms, reported exposures, consent).
INSERT INTO change_counters (name, value) VALUES ('erasures', 0);
INSERT INTO change_counters (name, value) VALUES ('consents', 0);
