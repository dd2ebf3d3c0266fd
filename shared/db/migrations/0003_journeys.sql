-- Published journey definitions. Every version is kept: prospects already travelling
-- stay on the version they started, so the runtime compiles all of them.
-- The live version of a journey (the one new prospects enter) is its highest
-- version that is not retired.
CREATE TABLE journey_versions (
    journey      text        NOT NULL CHECK (journey ~ '^[a-z0-9][a-z0-9_-]{0,99}$'),
    version      integer     NOT NULL CHECK (version >= 1),
    persona      text        NOT NULL,
    title        text        NOT NULL,
    -- The validated definition (aliases as in the YAML, JSON types).
    definition   jsonb       NOT NULL,
    -- The YAML as published, comments included.
    source       text        NOT NULL,
    -- SHA-256 of the normalised definition: republishing an identical file is a no-op.
    checksum     text        NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),
    published_at timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz,
    -- finish: prospects on it complete their run; exit: they leave the journey.
    retire_mode  text        CHECK (retire_mode IN ('finish', 'exit')),
    PRIMARY KEY (journey, version),
    CHECK ((retired_at IS NULL) = (retire_mode IS NULL))
);

-- The live version lookup: highest non-retired version per journey.
CREATE INDEX journey_versions_live ON journey_versions (journey, version DESC)
    WHERE retired_at IS NULL;
