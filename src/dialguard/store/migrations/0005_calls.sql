-- In the call: every notice played, digit pressed, opt-out and consent attempt, tied to the decision's
-- call id; and opt-outs keyed by their own id, so a journal replayed after a crash adds each once.
-- Call events are evidence like decisions: hashed as written, sealed in chained checkpoints.

CREATE TABLE call_events (
    id          bigserial PRIMARY KEY,
    call_id     uuid NOT NULL,
    at          timestamptz NOT NULL,
    kind        text NOT NULL,   -- notice.played, notice.failed, digit, optout, consent.granted ...
    detail      jsonb NOT NULL DEFAULT '{}',
    row_hash    bytea NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now()  -- the transaction's start: what the sealer orders by
);
CREATE INDEX call_events_call ON call_events (call_id, id);
CREATE INDEX call_events_inserted_at ON call_events (inserted_at, id);

CREATE TABLE call_event_checkpoints (
    id           bigserial PRIMARY KEY,
    from_at      timestamptz NOT NULL,
    to_at        timestamptz NOT NULL,
    row_count    integer NOT NULL,
    digest       bytea NOT NULL,
    prev_digest  bytea,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE optouts (
    id        uuid PRIMARY KEY,
    number    text NOT NULL,
    call_id   uuid NOT NULL,
    campaign  text NOT NULL,
    digit     text NOT NULL,
    at        timestamptz NOT NULL,        -- when the callee pressed the key
    via       text NOT NULL CHECK (via IN ('database', 'journal')),
    stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX optouts_number ON optouts (number);

CREATE TRIGGER call_events_append_only BEFORE UPDATE OR DELETE ON call_events
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER call_event_checkpoints_append_only BEFORE UPDATE OR DELETE ON call_event_checkpoints
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER optouts_append_only BEFORE UPDATE OR DELETE ON optouts
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
