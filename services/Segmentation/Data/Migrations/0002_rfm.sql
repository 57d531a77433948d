-- RFM: each contact's recency, frequency and monetary scores over completed orders in a window, the
-- tenant's table of named segments, and what the recompute schedule needs to know.

-- The stored scores: one row per contact with a completed order in the window of the last computation
-- (Features/Rfm/RfmScoring.cs writes all of a tenant's rows in one statement). Segment rules and
-- ListContactSegments read them. Recomputes rewrite every row (as_of moves), mostly without changing an
-- indexed column, so rows are left room for HOT updates.
CREATE TABLE rfm_scores (
    tenant_id     text          NOT NULL,
    contact_id    uuid          NOT NULL,
    recency_days  int           NOT NULL,   -- floor((as_of - last_order_at) / 24 h)
    frequency     bigint        NOT NULL,   -- completed orders in the window
    monetary      numeric       NOT NULL,   -- their total
    r             int           NOT NULL,   -- 1..5
    f             int           NOT NULL,
    m             int           NOT NULL,
    segment       text          NOT NULL,   -- the named segment (the tenant's table, first match), else 'Others'
    as_of         timestamptz   NOT NULL,   -- the window is [as_of - window_days, as_of)
    last_order_at timestamptz,              -- the last completed order in the window (NULL: a row not written by a computation)
    PRIMARY KEY (tenant_id, contact_id)
) WITH (fillfactor = 50);
CREATE INDEX rfm_scores_segment ON rfm_scores (tenant_id, segment, contact_id);

-- A tenant's named segments, checked in position order (first match wins). A tenant without rows uses
-- the default table (the rfm R package's, RfmTable.Default).
CREATE TABLE rfm_segments (
    tenant_id text NOT NULL,
    position  int  NOT NULL,
    name      text NOT NULL,
    r_min int NOT NULL, r_max int NOT NULL,
    f_min int NOT NULL, f_max int NOT NULL,
    m_min int NOT NULL, m_max int NOT NULL,
    PRIMARY KEY (tenant_id, position)
);

-- Per tenant: what its stored scores were computed for, and whether orders changed since. The membership
-- refresh bumps orders_changes when a batch's orders no longer match the stored scores; a recompute
-- records the count it started from, so a change that lands during a recompute is not lost.
CREATE TABLE rfm_state (
    tenant_id        text        NOT NULL PRIMARY KEY,
    orders_changes   bigint      NOT NULL DEFAULT 0,
    computed_changes bigint      NOT NULL DEFAULT 0,
    as_of            timestamptz,   -- of the stored scores (the recompute's now); NULL before the first
    window_days      int
);
