-- Segmentation's own copy of what Contacts and Delivery publish, and the segments kept over it.
-- Nothing here is read from another service's database. Every table carries tenant_id and is put
-- under row-level security by the migrator.
--
-- The projections hold no personal data beyond what a rule can test: no names, no addresses (only
-- whether an email, a phone or push tokens are known). Erasure deletes the contact's rows.

CREATE TABLE contacts (
    tenant_id   text        NOT NULL,
    contact_id  uuid        NOT NULL,
    external_id text,
    locale      text,
    time_zone   text,
    tags        text[]      NOT NULL DEFAULT '{}',
    attributes  jsonb       NOT NULL DEFAULT '{}',   -- as Contacts stores them; dates as {"$date": "..."}
    has_email   boolean     NOT NULL DEFAULT false,
    has_phone   boolean     NOT NULL DEFAULT false,
    push_tokens int         NOT NULL DEFAULT 0,
    suppressed  boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,                -- when Contacts created it (first seen when unknown)
    version_at  timestamptz NOT NULL DEFAULT '-infinity', -- the OccurredAt of the profile event applied
    PRIMARY KEY (tenant_id, contact_id)
);
CREATE INDEX contacts_tags ON contacts USING gin (tags);

-- Contacts erased: their rows are gone, and an event about them arriving late must not bring them back.
CREATE TABLE erased_contacts (
    tenant_id  text        NOT NULL,
    contact_id uuid        NOT NULL,
    erased_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact_id)
);

CREATE TABLE consents (
    tenant_id  text        NOT NULL,
    contact_id uuid        NOT NULL,
    channel    text        NOT NULL,   -- email, sms, push, kakao
    purpose    text        NOT NULL,   -- marketing, transactional, marketing_night
    status     text        NOT NULL,   -- opted_in, opted_out
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact_id, channel, purpose)
);

CREATE TABLE unreachable_channels (
    tenant_id   text        NOT NULL,
    contact_id  uuid        NOT NULL,
    channel     text        NOT NULL,
    reason      text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact_id, channel)
);

-- One row per order. Its lines are parallel arrays (sku, category, amount = quantity × unit price),
-- so a projection write is one row however many lines the order has; amounts is NULL for orders
-- announced without lines (events from before lines were published).
CREATE TABLE orders (
    tenant_id   text          NOT NULL,
    order_id    text          NOT NULL,
    contact_id  uuid          NOT NULL,
    occurred_at timestamptz   NOT NULL,
    currency    text          NOT NULL,
    total       numeric(20,4) NOT NULL,
    status      text          NOT NULL,   -- completed, cancelled, refunded
    skus        text[]        NOT NULL DEFAULT '{}',
    categories  text[]        NOT NULL DEFAULT '{}',
    amounts     numeric[],
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX orders_contact ON orders (tenant_id, contact_id, occurred_at);

CREATE TABLE engagement (
    tenant_id   text        NOT NULL,
    event_id    text        NOT NULL,
    contact_id  uuid        NOT NULL,
    type        text        NOT NULL,   -- delivered, opened, clicked, converted, custom
    name        text,
    channel     text,
    message_id  text,
    campaign_id text,
    occurred_at timestamptz NOT NULL,
    properties  jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX engagement_contact ON engagement (tenant_id, contact_id, type, occurred_at);

-- Delivery's outcomes: what was sent (received), suppressed or failed, per message.
CREATE TABLE messages (
    tenant_id   text        NOT NULL,
    message_id  uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    channel     text        NOT NULL,
    campaign_id text,
    outcome     text        NOT NULL,   -- sent, suppressed, failed
    reason      text,
    rule_id     text,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX messages_contact ON messages (tenant_id, contact_id, occurred_at);

CREATE TABLE segments (
    tenant_id    text        NOT NULL,
    segment_id   uuid        NOT NULL,
    name         text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    rule         jsonb       NOT NULL,    -- the rule tree as its proto JSON
    version      int         NOT NULL DEFAULT 1,
    depends_on   uuid[]      NOT NULL DEFAULT '{}', -- segments its rule names (no cycles)
    time_relative boolean    NOT NULL DEFAULT false, -- has conditions that move with the clock
    member_count bigint      NOT NULL DEFAULT 0,
    evaluated_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, segment_id)
);
CREATE UNIQUE INDEX segments_name ON segments (tenant_id, lower(name));

CREATE TABLE segment_members (
    tenant_id  text        NOT NULL,
    segment_id uuid        NOT NULL,
    contact_id uuid        NOT NULL,
    entered_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, segment_id, contact_id)
);
CREATE INDEX segment_members_contact ON segment_members (tenant_id, contact_id);

-- Contacts an event touched, waiting to be re-evaluated against the tenant's segments in a batch.
CREATE TABLE dirty_contacts (
    tenant_id  text        NOT NULL,
    contact_id uuid        NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact_id)
);
