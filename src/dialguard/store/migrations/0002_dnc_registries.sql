-- Do-not-call at national scale: registries (US National DNC, UK TPS/CTPS, any CSV) loaded whole as
-- versions and swapped in atomically; prefix wildcards; entries that expire (the Texas list: 3 years).

ALTER TABLE dnc_entries ADD COLUMN expires_at timestamptz;

-- Wildcards: every number starting with the prefix (a whole area code or range) is on the list.
CREATE TABLE dnc_prefixes (
    list_name   text NOT NULL,
    prefix      text NOT NULL CHECK (prefix ~ '^\+[1-9][0-9]{0,13}$'),
    source      text NOT NULL,
    evidence    jsonb NOT NULL DEFAULT '{}',
    added_at    timestamptz NOT NULL DEFAULT now(),
    added_by    text NOT NULL DEFAULT 'cli',
    id          bigserial UNIQUE,
    PRIMARY KEY (prefix, list_name)
);

-- A registry is a list loaded whole from its publisher's files. Exactly one version is live; a check
-- reads the live one, so it never sees half a list. list_date is the publisher's date of the data:
-- freshness rules (US: 31 days) are measured from it.
CREATE TABLE dnc_registries (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    live_version  bigint,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dnc_registry_versions (
    id           bigserial PRIMARY KEY,
    registry     text NOT NULL REFERENCES dnc_registries (name),
    format       text NOT NULL,
    list_date    date NOT NULL,
    based_on     bigint REFERENCES dnc_registry_versions (id),  -- the version a change file was applied to
    row_count    bigint NOT NULL,
    rejected     bigint NOT NULL,
    source_file  text,
    imported_by  text NOT NULL,
    started_at   timestamptz NOT NULL,
    live_at      timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE dnc_registries
    ADD FOREIGN KEY (live_version) REFERENCES dnc_registry_versions (id) DEFERRABLE INITIALLY DEFERRED;

-- One partition per version, numbers as E.164 digits in a bigint (8 bytes a row: 100M numbers fit).
-- An import fills a fresh table, indexes it, attaches it and moves live_version in one transaction.
CREATE TABLE dnc_registry_numbers (
    version_id  bigint NOT NULL,
    number      bigint NOT NULL
) PARTITION BY LIST (version_id);
