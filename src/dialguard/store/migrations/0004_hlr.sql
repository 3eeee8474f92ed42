-- HLR answers cached per number: roaming changes, so each answer carries when it was fetched and
-- is used only while younger than the configured TTL.
CREATE TABLE hlr_cache (
    number           text PRIMARY KEY,
    status           text NOT NULL CHECK (status IN ('home', 'abroad')),
    visited_country  text,
    home_network     text,
    ported           boolean,
    provider         text NOT NULL,
    fetched_at       timestamptz NOT NULL
);
