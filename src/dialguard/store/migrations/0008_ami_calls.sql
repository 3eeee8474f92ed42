-- The AMI half: calls the gate originates, what became of every answered call, and the counts the
-- abandoned-call rule is governed by. The timeline itself lives in call_events (0005), evidence like the rest.

-- One row per POST /v1/calls key: a retried request finds its call here and is never originated twice.
-- status moves queued -> sent -> originated | failed | unknown; it is bookkeeping, the evidence is in
-- call_events. 'sending' left behind by a crash reads as unknown: it is never sent again.
CREATE TABLE originations (
    caller          text NOT NULL,        -- the token's name: keys are per client
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    call_id         uuid NOT NULL UNIQUE,
    request_hash    bytea NOT NULL,       -- the same key with another body is refused, not replayed
    number          text NOT NULL,
    campaign        text NOT NULL,
    status          text NOT NULL CHECK (status IN ('blocked', 'sending', 'originated', 'failed', 'unknown')),
    answer          jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (caller, idempotency_key)
);
CREATE INDEX originations_campaign_live ON originations (campaign, created_at) WHERE status IN ('sending', 'originated');

-- One row per answered call once its outcome is known: an agent reached it within the rule's seconds, or
-- not (abandoned). Written once, never changed.
CREATE TABLE call_outcomes (
    call_id      uuid PRIMARY KEY,
    number       text NOT NULL,
    campaign     text NOT NULL,
    answered_at  timestamptz NOT NULL,
    agent_at     timestamptz,                 -- none: no agent joined the call
    abandoned    boolean NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_outcomes_abandoned ON call_outcomes (number, answered_at) WHERE abandoned;
CREATE TRIGGER call_outcomes_append_only BEFORE UPDATE OR DELETE ON call_outcomes
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();

-- The governor's counts, an hour a row, so a 30-day rate is a sum of at most 720 rows on the call path.
CREATE TABLE campaign_answer_hours (
    campaign   text NOT NULL,
    hour       timestamptz NOT NULL,
    answered   integer NOT NULL DEFAULT 0,
    abandoned  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign, hour)
);
