-- Gateways keep the tokens they have looked up for a few seconds (web/token_cache.py). Any change to
-- api_tokens (a revocation, a new token, a role changed by hand, a delete) tells every gateway at its
-- commit, in the changing transaction: one NOTIFY per statement, whoever makes it (the CLI, the API, psql),
-- so no writer can forget to. The payload is empty: a gateway forgets every token it keeps.
-- (Numbered 0012: 0011 is taken on another branch.)
CREATE FUNCTION dialguard_tokens_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dialguard_tokens', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_tokens_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION dialguard_tokens_changed();
