-- Experiments and proof (campaigns-experiments): the goal events attribution reads, and one campaign per
-- conversion at most.

-- Every order (Contacts' TransactionsRecorded, completed ones) and named engagement event seen, by its
-- natural key: a redelivered event adds nothing. Attribution reads them here rather than only at the
-- moment they arrive, so that an order whose send outcome is recorded after it (events may be reordered)
-- is still attributed when the report is read.
CREATE TABLE goal_events (
    tenant_id   text          NOT NULL,
    source_id   text          NOT NULL,   -- "order:<order id>" or "event:<engagement event id>"
    contact_id  uuid          NOT NULL,
    kind        text          NOT NULL CHECK (kind IN ('order', 'event')),
    name        text,                     -- the event's name (kind = event)
    occurred_at timestamptz   NOT NULL,
    revenue     numeric(18,4) NOT NULL DEFAULT 0,
    currency    text,
    PRIMARY KEY (tenant_id, source_id)
);
CREATE INDEX goal_events_by_contact ON goal_events (tenant_id, contact_id, occurred_at);

-- Last touch: an order or event converts for one campaign at most.
CREATE UNIQUE INDEX conversions_once ON conversions (tenant_id, source_id);
CREATE INDEX conversions_by_campaign ON conversions (tenant_id, campaign_id, run_id);

-- The send instants attribution looks up per contact.
CREATE INDEX outcomes_by_contact ON outcomes (tenant_id, contact_id, kind, occurred_at);

