-- Customer webhooks: the endpoints a workspace registers, and the durable queue of signed deliveries to them
-- (claimed with FOR UPDATE SKIP LOCKED by the webhook dispatcher, retried on a schedule of about three days).
CREATE TABLE webhook_endpoints (
    tenant_id text NOT NULL,
    endpoint_id uuid NOT NULL,
    url text NOT NULL,
    description text NOT NULL DEFAULT '',
    event_types text[] NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    -- The whsec_ secrets, sealed with Delivery:SecretKey. During a rotation the previous one keeps signing too.
    secret bytea NOT NULL,
    previous_secret bytea,
    previous_secret_expires_at timestamptz,
    -- Why the platform disabled the endpoint (a 410 Gone from the receiver), shown to the workspace.
    disabled_reason text NOT NULL DEFAULT '',
    disabled_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, endpoint_id)
);

CREATE TABLE webhook_deliveries (
    tenant_id text NOT NULL,
    delivery_id text NOT NULL,          -- the webhook-id header: the receiver's idempotency key
    endpoint_id uuid NOT NULL,
    event_type text NOT NULL,
    event_key text NOT NULL,            -- what the event is about (e.g. message.sent:<message id>): one delivery per endpoint
    payload text NOT NULL,              -- the JSON body exactly as signed and sent
    status text NOT NULL DEFAULT 'pending', -- pending, delivered, failed
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    claimed_until timestamptz,
    last_status_code integer,
    last_error text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    last_attempt_at timestamptz,
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, delivery_id),
    UNIQUE (tenant_id, endpoint_id, event_key),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, endpoint_id) ON DELETE CASCADE
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (tenant_id, endpoint_id, created_at DESC, delivery_id);
