-- dialguard's first schema: campaigns, the consent ledger, the internal do-not-call list,
-- attempts counted for frequency caps, and append-only decisions sealed by checkpoints.

CREATE TABLE campaigns (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    purpose     text NOT NULL CHECK (purpose IN ('marketing', 'informational', 'debt_collection', 'survey')),
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT 'cli'
);

-- Consent: grants and revocations are both append-only; the current state is derived from them.
CREATE TABLE consent_grants (
    id          bigserial PRIMARY KEY,
    number      text NOT NULL,
    purpose     text CHECK (purpose IN ('marketing', 'informational', 'debt_collection', 'survey')),
    campaign    text,
    kind        text NOT NULL,
    source      text NOT NULL,
    evidence    jsonb NOT NULL DEFAULT '{}',
    granted_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    created_by  text NOT NULL DEFAULT 'cli',
    CHECK (purpose IS NULL OR campaign IS NULL)
);
CREATE INDEX consent_grants_number ON consent_grants (number);

-- A revocation with consent_id NULL withdraws every grant of the number made before it.
CREATE TABLE consent_revocations (
    id          bigserial PRIMARY KEY,
    number      text NOT NULL,
    consent_id  bigint REFERENCES consent_grants (id),
    source      text NOT NULL,
    evidence    jsonb NOT NULL DEFAULT '{}',
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT 'cli'
);
CREATE INDEX consent_revocations_number ON consent_revocations (number);

-- Do-not-call: the current entries, one row per (list, number); every change is kept in dnc_history.
CREATE TABLE dnc_entries (
    list_name   text NOT NULL,
    number      text NOT NULL,
    source      text NOT NULL,
    evidence    jsonb NOT NULL DEFAULT '{}',
    added_at    timestamptz NOT NULL DEFAULT now(),
    added_by    text NOT NULL DEFAULT 'cli',
    id          bigserial UNIQUE,
    PRIMARY KEY (number, list_name)
);

CREATE TABLE dnc_history (
    id          bigserial PRIMARY KEY,
    list_name   text NOT NULL,
    number      text NOT NULL,
    action      text NOT NULL CHECK (action IN ('add', 'remove')),
    source      text NOT NULL,
    evidence    jsonb NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL DEFAULT 'cli'
);
CREATE INDEX dnc_history_number ON dnc_history (number);

-- Calls the gate let through and that counted (AGI checks, check --record): frequency caps count these.
CREATE TABLE attempts (
    id          bigserial PRIMARY KEY,
    number      text NOT NULL,
    campaign    text NOT NULL,
    purpose     text NOT NULL,
    call_id     uuid NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX attempts_number_at ON attempts (number, at);

-- Decisions are append-only. row_hash covers the canonical JSON of the row. Checkpoints chain digests
-- over ranges of inserted_at (the database's transaction start time), sealed only once every transaction
-- that began inside the range has ended: a changed, removed or slipped-in row is then detected, and the
-- per-call path takes no lock at all.
CREATE TABLE decisions (
    id             bigserial PRIMARY KEY,
    call_id        uuid NOT NULL UNIQUE,
    number         text NOT NULL,
    campaign       text NOT NULL,
    verdict        text NOT NULL CHECK (verdict IN ('ALLOW', 'BLOCK')),
    reason         text NOT NULL,
    body           jsonb NOT NULL,
    rules_version  text NOT NULL,
    decided_at     timestamptz NOT NULL,
    recorded       boolean NOT NULL,
    writer         text NOT NULL,
    row_hash       bytea NOT NULL,
    inserted_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_number ON decisions (number, decided_at);
CREATE INDEX decisions_decided_at ON decisions (decided_at);
CREATE INDEX decisions_inserted_at ON decisions (inserted_at, id);

CREATE TABLE decision_checkpoints (
    id           bigserial PRIMARY KEY,
    from_at      timestamptz NOT NULL,
    to_at        timestamptz NOT NULL,
    row_count    integer NOT NULL,
    digest       bytea NOT NULL,
    prev_digest  bytea,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Nothing may rewrite history: updates and deletes on the append-only tables are refused.
CREATE FUNCTION dialguard_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME;
END $$;
CREATE TRIGGER decisions_append_only BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER decision_checkpoints_append_only BEFORE UPDATE OR DELETE ON decision_checkpoints
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER consent_grants_append_only BEFORE UPDATE OR DELETE ON consent_grants
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER consent_revocations_append_only BEFORE UPDATE OR DELETE ON consent_revocations
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER dnc_history_append_only BEFORE UPDATE OR DELETE ON dnc_history
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
