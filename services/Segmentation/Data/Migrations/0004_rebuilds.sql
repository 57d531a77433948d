-- Rebuilds of a tenant's projections from Contacts' exports (Features/Backfill), and what the backfill
-- needs to share the order projection with the event consumers.

CREATE TABLE rebuilds (
    tenant_id         text        NOT NULL,
    rebuild_id        uuid        NOT NULL,
    status            text        NOT NULL,                -- running, succeeded, failed
    contacts          bigint      NOT NULL DEFAULT 0,      -- rows received from each export
    consents          bigint      NOT NULL DEFAULT 0,
    orders            bigint      NOT NULL DEFAULT 0,
    engagement_events bigint      NOT NULL DEFAULT 0,
    cursors           jsonb       NOT NULL DEFAULT '{}',   -- per export, the page token after the last page applied
    done              text[]      NOT NULL DEFAULT '{}',   -- exports read to their end
    started_at        timestamptz NOT NULL DEFAULT now(),  -- also the cut of the order writer (see OrderProjection)
    finished_at       timestamptz,
    failure           text,
    lease_until       timestamptz,                         -- the replica running it renews this with every page
    PRIMARY KEY (tenant_id, rebuild_id)
);
CREATE UNIQUE INDEX rebuilds_one_running ON rebuilds (tenant_id) WHERE status = 'running';
CREATE INDEX rebuilds_latest ON rebuilds (tenant_id, started_at DESC);

-- When an order's row was last written (this database's clock). Events carry no version of an order, so a
-- backfill replaces a known order only when its row predates the rebuild (see OrderProjection).
ALTER TABLE orders ADD COLUMN written_at timestamptz NOT NULL DEFAULT now();
