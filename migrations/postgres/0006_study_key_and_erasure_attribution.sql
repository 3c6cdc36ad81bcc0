-- Commonlab schema, part 6: the study key's fingerprint, who erased a member
-- and why, who changed an API key and why, and the counters replicas poll
-- to forget what they cached about members.

-- The fingerprint of the study key the stored pseudonyms were made with
-- (16 hex digits of SHA-256('commonlab-study-key:' || key): it identifies
-- the key and reveals nothing useful about it; the key itself is never
-- stored). Recorded at first use; a server, an import or an erasure with
-- another key is refused, since its pseudonyms would match nothing stored.
-- Replicas on one database must share one key file. One row at most, never
-- changed: rotating the key would orphan every pseudonym.
CREATE TABLE study_key (
    id          INTEGER     PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT        NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{16}$'),
    recorded_at TIMESTAMPTZ NOT NULL
);

CREATE FUNCTION study_key_recorded_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'study_key is recorded once: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER study_key_no_update_or_delete
    BEFORE UPDATE OR DELETE ON study_key
    FOR EACH ROW EXECUTE FUNCTION study_key_recorded_once();

CREATE TRIGGER study_key_no_truncate
    BEFORE TRUNCATE ON study_key
    FOR EACH STATEMENT EXECUTE FUNCTION study_key_recorded_once();

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
INSERT INTO change_counters (name, value) VALUES ('erasures', 0), ('consents', 0);
