-- The HTTP API's bearer tokens (stored hashed), complaints, and the audit log of every change.

CREATE TABLE api_tokens (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    role        text NOT NULL CHECK (role IN ('admin', 'dialer', 'supervisor')),
    token_hash  bytea NOT NULL UNIQUE,  -- sha256 of the token: a leaked table leaks no token
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    revoked_at  timestamptz
);

-- A complaint revokes consent and puts the number on the internal list, in the same transaction.
CREATE TABLE complaints (
    id          bigserial PRIMARY KEY,
    number      text NOT NULL,
    campaign    text,
    channel     text NOT NULL,   -- how it reached us: phone, email, letter, regulator, api
    note        text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL
);
CREATE INDEX complaints_number ON complaints (number);

-- Who changed what, when: consent, lists, campaigns, tokens. Append-only.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,   -- the token's name, or "cli"
    action   text NOT NULL,   -- e.g. consent.grant, dnc.add, registry.import, token.create
    subject  text NOT NULL,   -- the number, list, campaign or token concerned
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_subject ON audit_log (subject);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
CREATE TRIGGER complaints_append_only BEFORE UPDATE OR DELETE ON complaints
    FOR EACH ROW EXECUTE FUNCTION dialguard_append_only();
