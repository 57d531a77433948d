-- Erased identities are kept as keyed hashes (HMAC-SHA256 with the deployment's Contacts:SuppressionKey
-- over the old SHA-256 digest): see SuppressionKey. Rows written before are converted at start-up
-- (keyed = false until then); the function is the SQL side of SuppressionKey.Hash, given the key's pads.
ALTER TABLE suppressions ADD COLUMN keyed boolean NOT NULL DEFAULT false;

CREATE FUNCTION suppression_hmac(tenant text, kind text, value text, inner_pad bytea, outer_pad bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT sha256(outer_pad || sha256(inner_pad || suppression_hash(tenant, kind, value))) $$;
