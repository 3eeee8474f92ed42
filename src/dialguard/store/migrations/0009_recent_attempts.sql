-- The attempts a frequency cap may count, always read through attempts_number_at (issue 15).
-- A plan made while attempts was small (analyzed empty, autovacuum off) read the whole table on every
-- check for as long as the connection kept it. No query shape prevents that: PostgreSQL prices a scan
-- of a table it believes empty at zero, and nothing replans the cached statement until the table is
-- analyzed again. Sequential scans are off inside this function only, so its plan is the index's.
CREATE FUNCTION dialguard_recent_attempts(p_number text, p_since timestamptz) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET enable_seqscan = off
AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('at', at, 'campaign', campaign, 'purpose', purpose)),
                            '[]')
              FROM attempts WHERE number = p_number AND at > p_since);
END
$$;
