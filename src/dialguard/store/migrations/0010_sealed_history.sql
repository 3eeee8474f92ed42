-- The consent ledger, the do-not-call history and the opt-outs are evidence as much as decisions are:
-- they are sealed in chained checkpoints too (store/sealing.py). Their rows are hashed when sealed, from
-- their content; inserted_at (the transaction's start, as for decisions) orders them for the sealer, and
-- a random salt in each row's hash keeps the hash of someone else's row, shown in an evidence bundle,
-- from being guessed back to a number. (An opt-out's hash holds its call id, random already.)
ALTER TABLE consent_grants ADD COLUMN inserted_at timestamptz NOT NULL DEFAULT now(),
                           ADD COLUMN salt uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE consent_revocations ADD COLUMN inserted_at timestamptz NOT NULL DEFAULT now(),
                                ADD COLUMN salt uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE dnc_history ADD COLUMN inserted_at timestamptz NOT NULL DEFAULT now(),
                        ADD COLUMN salt uuid NOT NULL DEFAULT gen_random_uuid();
-- Opt-outs have UUID ids, so their checkpoints are bounded by time alone: the ones stored so far are
-- spread by when they were stored rather than all given this migration's instant.
ALTER TABLE optouts ADD COLUMN inserted_at timestamptz;
ALTER TABLE optouts DISABLE TRIGGER optouts_append_only;
UPDATE optouts SET inserted_at = least(stored_at, now());
ALTER TABLE optouts ENABLE TRIGGER optouts_append_only;
ALTER TABLE optouts ALTER COLUMN inserted_at SET DEFAULT now(), ALTER COLUMN inserted_at SET NOT NULL;
CREATE INDEX consent_grants_inserted_at ON consent_grants (inserted_at, id);
CREATE INDEX consent_revocations_inserted_at ON consent_revocations (inserted_at, id);
CREATE INDEX dnc_history_inserted_at ON dnc_history (inserted_at, id);
CREATE INDEX optouts_inserted_at ON optouts (inserted_at, id);

-- A checkpoint's mac: HMAC-SHA256 of its header under the seal key, a key the database never sees
-- (gate.seal_key, or seal.key in the data directory). Whoever holds only the database's credentials can
-- re-chain SHA-256 digests but cannot make these. NULL: sealed before the key existed.
-- from_id and to_id: a checkpoint covers the rows from (from_at, from_id) up to, not including,
-- (to_at, to_id) in (inserted_at, id) order, so that a backlog or one bulk import (a million rows with
-- one inserted_at) is sealed in checkpoints of bounded size: an evidence bundle carries the hashes of
-- every row of each checkpoint it cites. 0: the bound is the time alone (ids start at 1).
ALTER TABLE decision_checkpoints ADD COLUMN mac bytea,
    ADD COLUMN from_id bigint NOT NULL DEFAULT 0, ADD COLUMN to_id bigint NOT NULL DEFAULT 0;
ALTER TABLE call_event_checkpoints ADD COLUMN mac bytea,
    ADD COLUMN from_id bigint NOT NULL DEFAULT 0, ADD COLUMN to_id bigint NOT NULL DEFAULT 0;
CREATE INDEX decision_checkpoints_to ON decision_checkpoints (to_at, to_id);
CREATE INDEX call_event_checkpoints_to ON call_event_checkpoints (to_at, to_id);

-- The same shape as decision_checkpoints, each with its own id sequence (opt-outs': from_id, to_id 0).
CREATE TABLE consent_grant_checkpoints (
    id           bigserial PRIMARY KEY,
    from_at      timestamptz NOT NULL,
    to_at        timestamptz NOT NULL,
    row_count    integer NOT NULL,
    digest       bytea NOT NULL,
    prev_digest  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    mac          bytea,
    from_id      bigint NOT NULL DEFAULT 0,
    to_id        bigint NOT NULL DEFAULT 0
);
CREATE INDEX consent_grant_checkpoints_to ON consent_grant_checkpoints (to_at, to_id);
CREATE TABLE consent_revocation_checkpoints (
    id           bigserial PRIMARY KEY,
    from_at      timestamptz NOT NULL,
    to_at        timestamptz NOT NULL,
    row_count    integer NOT NULL,
    digest       bytea NOT NULL,
    prev_digest  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    mac          bytea,
    from_id      bigint NOT NULL DEFAULT 0,
    to_id        bigint NOT NULL DEFAULT 0
);
CREATE INDEX consent_revocation_checkpoints_to ON consent_revocation_checkpoints (to_at, to_id);
CREATE TABLE dnc_history_checkpoints (
    id           bigserial PRIMARY KEY,
    from_at      timestamptz NOT NULL,
    to_at        timestamptz NOT NULL,
    row_count    integer NOT NULL,
    digest       bytea NOT NULL,
    prev_digest  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    mac          bytea,
    from_id      bigint NOT NULL DEFAULT 0,
    to_id        bigint NOT NULL DEFAULT 0
);
CREATE INDEX dnc_history_checkpoints_to ON dnc_history_checkpoints (to_at, to_id);
CREATE TABLE optout_checkpoints (
    id           bigserial PRIMARY KEY,
    from_at      timestamptz NOT NULL,
    to_at        timestamptz NOT NULL,
    row_count    integer NOT NULL,
    digest       bytea NOT NULL,
    prev_digest  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    mac          bytea,
    from_id      bigint NOT NULL DEFAULT 0,
    to_id        bigint NOT NULL DEFAULT 0
);
CREATE INDEX optout_checkpoints_to ON optout_checkpoints (to_at, to_id);

CREATE TRIGGER consent_grant_checkpoints_append_only BEFORE UPDATE OR DELETE ON consent_grant_checkpoints
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER consent_revocation_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON consent_revocation_checkpoints
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER dnc_history_checkpoints_append_only BEFORE UPDATE OR DELETE ON dnc_history_checkpoints
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER optout_checkpoints_append_only BEFORE UPDATE OR DELETE ON optout_checkpoints
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
