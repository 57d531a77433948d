-- API keys may expire (refused from then on, like a revoked key), and show when they were last used.
-- last_used_at is written in batches from what the gateway saw, never once per request.
ALTER TABLE api_keys
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN last_used_at timestamptz;
