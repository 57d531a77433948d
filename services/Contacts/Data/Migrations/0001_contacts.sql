-- Contacts service schema. Every row carries tenant_id and every query filters on it.

CREATE TABLE workspaces (
    tenant_id      text PRIMARY KEY,
    name           text        NOT NULL,
    default_region text        NOT NULL DEFAULT 'KR',
    time_zone      text        NOT NULL DEFAULT 'Asia/Seoul',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
    tenant_id   text        NOT NULL,
    contact_id  uuid        NOT NULL,
    external_id text        NOT NULL,
    name        text,
    email       text,
    phone       text,        -- E.164
    locale      text,
    time_zone   text,
    attributes  jsonb       NOT NULL DEFAULT '{}',
    tags        text[]      NOT NULL DEFAULT '{}',
    suppressed  boolean     NOT NULL DEFAULT false,
    erased_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact_id),
    UNIQUE (tenant_id, external_id)
);
CREATE INDEX contacts_email ON contacts (tenant_id, lower(email)) WHERE email IS NOT NULL;
CREATE INDEX contacts_tags ON contacts USING gin (tags);

-- Hashes (SHA-256 of tenant + kind + normalised value) of erased identities; nothing readable is kept.
CREATE TABLE suppressions (
    tenant_id  text        NOT NULL,
    value_hash bytea       NOT NULL,
    kind       text        NOT NULL,  -- external_id, email, phone
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, value_hash)
);

-- Consent: append-only history (the legal proof) plus the current state per channel and purpose.
CREATE TABLE consent_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text        NOT NULL,
    contact_id  uuid        NOT NULL,
    channel     text        NOT NULL,
    purpose     text        NOT NULL,
    status      text        NOT NULL,
    source      text        NOT NULL,
    evidence    text        NOT NULL DEFAULT '',
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_history_contact ON consent_history (tenant_id, contact_id, id);

CREATE TABLE consents (
    tenant_id    text        NOT NULL,
    contact_id   uuid        NOT NULL,
    channel      text        NOT NULL,
    purpose      text        NOT NULL,
    status       text        NOT NULL,
    source       text        NOT NULL,
    changed_at   timestamptz NOT NULL,
    consented_at timestamptz,   -- when the current opt-in was given (two-year re-confirmation)
    PRIMARY KEY (tenant_id, contact_id, channel, purpose)
);

CREATE TABLE push_tokens (
    tenant_id  text        NOT NULL,
    contact_id uuid        NOT NULL,
    device_id  text        NOT NULL,
    platform   text        NOT NULL,
    token      text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, contact_id, device_id)
);

-- Orders are kept forever (refunds and cancellations are statuses); erasure only clears contact_id.
CREATE TABLE orders (
    tenant_id          text          NOT NULL,
    order_id           text          NOT NULL,
    contact_id         uuid,
    occurred_at        timestamptz   NOT NULL,
    utc_offset_minutes int           NOT NULL DEFAULT 0,
    currency           text          NOT NULL,
    total              numeric(20,4) NOT NULL,
    status             text          NOT NULL,
    status_changed_at  timestamptz,
    recorded_at        timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX orders_contact ON orders (tenant_id, contact_id, occurred_at DESC) WHERE contact_id IS NOT NULL;

CREATE TABLE order_lines (
    tenant_id  text          NOT NULL,
    order_id   text          NOT NULL,
    line_no    int           NOT NULL,
    sku        text          NOT NULL,
    name       text,
    category   text,
    quantity   numeric(20,4) NOT NULL,
    unit_price numeric(20,4) NOT NULL,
    PRIMARY KEY (tenant_id, order_id, line_no)
);

CREATE TABLE engagement_events (
    tenant_id   text        NOT NULL,
    event_id    text        NOT NULL,
    contact_id  uuid,
    type        text        NOT NULL,
    name        text,
    channel     text,
    message_id  text,
    campaign_id text,
    occurred_at timestamptz NOT NULL,
    properties  jsonb       NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX engagement_contact ON engagement_events (tenant_id, contact_id, occurred_at DESC) WHERE contact_id IS NOT NULL;

CREATE TABLE imports (
    tenant_id        text        NOT NULL,
    import_id        uuid        NOT NULL,
    kind             text        NOT NULL,
    status           text        NOT NULL,
    file_name        text        NOT NULL DEFAULT '',
    rows_read        bigint      NOT NULL DEFAULT 0,
    rows_accepted    bigint      NOT NULL DEFAULT 0,
    rows_rejected    bigint      NOT NULL DEFAULT 0,
    contacts_created bigint      NOT NULL DEFAULT 0,
    contacts_updated bigint      NOT NULL DEFAULT 0,
    orders_created   bigint      NOT NULL DEFAULT 0,
    failure          text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (tenant_id, import_id)
);

CREATE TABLE import_errors (
    tenant_id text   NOT NULL,
    import_id uuid   NOT NULL,
    line      bigint NOT NULL,
    col       text   NOT NULL DEFAULT '',
    reason    text   NOT NULL,
    PRIMARY KEY (tenant_id, import_id, line, col)
);
