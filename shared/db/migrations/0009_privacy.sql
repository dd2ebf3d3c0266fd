-- Privacy: erasing a person (DELETE /v1/prospects/{id}) keeps no id, address or trait,
-- yet an erased person who unsubscribed is never contacted again and an audit can show
-- that the erasure happened. Both rely on keyed hashes (docs/privacy.md).

-- The installation's random key of those hashes: without it, the hash of an address
-- could be found by hashing a list of candidate addresses. Generated here, once, from
-- the server's strong random source; it never leaves the database.
CREATE TABLE privacy_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key       bytea   NOT NULL CHECK (length(key) = 32)
);
INSERT INTO privacy_key (key)
VALUES (sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())));

-- SHA-256 of the installation key and a value: the same on every server and process.
CREATE FUNCTION privacy_hash(value text) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    AS $$ SELECT sha256(key || convert_to(value, 'UTF8')) FROM privacy_key $$;

-- An email address's hash: case and surrounding blanks make no difference.
CREATE FUNCTION address_hash(address text) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    AS $$ SELECT privacy_hash('address:' || lower(btrim(address))) $$;

-- A prospect id's hash (the erasure record's).
CREATE FUNCTION prospect_hash(prospect_id text) RETURNS bytea
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    AS $$ SELECT privacy_hash('prospect:' || prospect_id) $$;

-- A suppression of an erased person: its prospect_id is a random pseudonym, and it
-- matches sends by the hash of the recipient's address (checked by delivery).
ALTER TABLE suppressions ADD COLUMN address_hash bytea;
CREATE INDEX suppressions_address ON suppressions (address_hash, channel)
    WHERE address_hash IS NOT NULL;

-- One row per erased id (the one asked for and every id linked to it): only its hash.
CREATE TABLE erasures (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id_hash   bytea       NOT NULL,
    erased_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX erasures_id_hash ON erasures (id_hash);

-- A person's deliveries, found without scanning every send (export and erasure).
CREATE INDEX deliveries_prospect ON deliveries (prospect_id);
