-- API keys for the gateway: a key acts for its workspace with its scopes. Only a hash of the
-- secret is kept (SHA-256: the secret is 32 random bytes, so a slow hash adds nothing).
CREATE TABLE api_keys (
    key_id      uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL,
    name        text        NOT NULL,
    scopes      text[]      NOT NULL,
    secret_hash bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);
