-- The one definition of a suppression entry's hash in SQL; ContactFields.SuppressionHash is the same in C#.
CREATE FUNCTION suppression_hash(tenant text, kind text, value text) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT sha256(convert_to(tenant || E'\n' || kind || E'\n' || value, 'UTF8')) $$;
