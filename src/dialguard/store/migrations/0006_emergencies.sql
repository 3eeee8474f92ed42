-- Declared emergencies: while one is in force, the purposes a pack names may not be called into its
-- area (New York: no telemarketing into an area under a declared state of emergency). An administrator
-- enters the governor's declaration; prefixes narrow it to area codes, none means the whole area.
CREATE TABLE emergencies (
    id           bigserial PRIMARY KEY,
    area         text NOT NULL CHECK (area ~ '^[A-Z]{2}-[A-Z0-9]{1,3}$'),   -- a subdivision: US-NY
    prefixes     text[] NOT NULL DEFAULT '{}' CHECK (array_position(prefixes, NULL) IS NULL),
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    reason       text NOT NULL,        -- the declaration: "Executive Order 27, winter storm, Erie County"
    declared_by  text NOT NULL,
    declared_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at >= starts_at)      -- equal: called off before it began, never in force
);
CREATE INDEX emergencies_in_force ON emergencies (ends_at, starts_at);
