-- The gateway's role may add to history but not rewrite it (store/roles.py grants what it may do). The
-- company lists need two changes an INSERT cannot make: renewing an expired entry and removing one. They
-- go through these functions, which run as the schema's owner and can do only that: a renewal touches an
-- entry that has expired and nothing else, and a removal writes its history row in the same call, so an
-- opt-out cannot be taken off a list with the gateway's credentials without a sealed trace of it.
CREATE FUNCTION dialguard_dnc_renew(
    p_list text, p_number text, p_source text, p_evidence jsonb, p_actor text, p_expires_at timestamptz,
    p_at timestamptz
) RETURNS boolean LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    INSERT INTO dnc_entries (list_name, number, source, evidence, added_by, expires_at, added_at)
    VALUES (p_list, p_number, p_source, p_evidence, p_actor, p_expires_at, p_at)
    ON CONFLICT (number, list_name) DO UPDATE
      SET expires_at = EXCLUDED.expires_at, added_at = EXCLUDED.added_at
      WHERE dnc_entries.expires_at IS NOT NULL AND dnc_entries.expires_at <= p_at
    RETURNING true
$$;

-- p_entry: a number, or a wildcard (digits then *) for a prefix entry.
CREATE FUNCTION dialguard_dnc_remove(p_list text, p_entry text, p_source text, p_actor text, p_at timestamptz)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    removed boolean;
BEGIN
    IF right(p_entry, 1) = '*' THEN
        DELETE FROM dnc_prefixes WHERE list_name = p_list AND prefix = left(p_entry, -1) RETURNING true
          INTO removed;
    ELSE
        DELETE FROM dnc_entries WHERE list_name = p_list AND number = p_entry RETURNING true INTO removed;
    END IF;
    IF removed THEN
        INSERT INTO dnc_history (list_name, number, action, source, actor, at)
        VALUES (p_list, p_entry, 'remove', p_source, p_actor, p_at);
    END IF;
    RETURN coalesce(removed, false);
END
$$;

-- Statistics after a bulk import (issue 15): ANALYZE is the owner's to run, so the gateway asks for it,
-- for the tables a check reads whose size a bulk import changes.
CREATE FUNCTION dialguard_analyze(p_table text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    IF p_table NOT IN ('dnc_entries', 'dnc_prefixes', 'consent_grants', 'attempts') THEN
        RAISE EXCEPTION 'dialguard_analyze: % is not a table the gateway may analyze', p_table;
    END IF;
    EXECUTE format('ANALYZE %I', p_table);
END
$$;
REVOKE EXECUTE ON FUNCTION dialguard_dnc_renew, dialguard_dnc_remove, dialguard_analyze FROM PUBLIC;
