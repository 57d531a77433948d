-- Delivery service schema. Every row carries tenant_id and every query filters on it.

-- Projection of Contacts' events: where a contact can be reached and what they agreed to.
CREATE TABLE contact_channels (
    tenant_id         text        NOT NULL,
    contact_id        uuid        NOT NULL,
    email             text,
    phone             text,
    time_zone         text,
    suppressed        boolean     NOT NULL DEFAULT false,
    erased            boolean     NOT NULL DEFAULT false,
    sms_unreachable   boolean     NOT NULL DEFAULT false,
    email_unreachable boolean     NOT NULL DEFAULT false,
    version_at        timestamptz NOT NULL,  -- OccurredAt of the event applied last (last writer wins)
    PRIMARY KEY (tenant_id, contact_id)
);

CREATE TABLE contact_consents (
    tenant_id  text        NOT NULL,
    contact_id uuid        NOT NULL,
    channel    text        NOT NULL,
    purpose    text        NOT NULL,  -- marketing, transactional, marketing_night
    status     text        NOT NULL,  -- opted_in, opted_out
    changed_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact_id, channel, purpose)
);

CREATE TABLE delivery_settings (
    tenant_id                  text PRIMARY KEY,
    quiet_enabled              boolean NOT NULL DEFAULT false,
    quiet_start                text    NOT NULL DEFAULT '21:00',
    quiet_end                  text    NOT NULL DEFAULT '08:00',
    time_zone                  text    NOT NULL DEFAULT 'Asia/Seoul',
    transactional_hourly_limit int     NOT NULL DEFAULT 20,
    sender_name                text    NOT NULL DEFAULT '',
    opt_out_number             text    NOT NULL DEFAULT '',
    unsubscribe_url            text    NOT NULL DEFAULT '',
    unsubscribe_mailto         text    NOT NULL DEFAULT ''
);

CREATE TABLE cap_rules (
    tenant_id      text   NOT NULL,
    rule_id        text   NOT NULL,
    scope          text   NOT NULL,  -- all_marketing, channel, category
    scope_value    text   NOT NULL DEFAULT '',
    cap_limit      int    NOT NULL,
    window_seconds bigint NOT NULL,
    PRIMARY KEY (tenant_id, rule_id)
);

CREATE TABLE provider_accounts (
    tenant_id           text             NOT NULL,
    account_id          text             NOT NULL,
    kind                text             NOT NULL,  -- twilio, smtp
    channel             text             NOT NULL,
    is_default          boolean          NOT NULL DEFAULT false,
    messages_per_second double precision NOT NULL DEFAULT 1,
    settings            jsonb            NOT NULL DEFAULT '{}',
    secret              bytea,                      -- AES-GCM, key from configuration
    PRIMARY KEY (tenant_id, account_id)
);

-- Every message, accepted once per idempotency key. Messages holding a cap reservation are the
-- send ledger that frequency caps are rebuilt from when Redis has lost them.
CREATE TABLE messages (
    tenant_id           text        NOT NULL,
    message_id          uuid        NOT NULL,
    idempotency_key     text        NOT NULL,
    contact_id          uuid        NOT NULL,
    channel             text        NOT NULL,
    purpose             text        NOT NULL,
    campaign_id         text,
    category            text,
    subject             text,
    text_body           text,
    html_body           text,
    quiet_start         text,
    quiet_end           text,
    on_cap              text        NOT NULL DEFAULT 'suppress',
    ignore_caps         boolean     NOT NULL DEFAULT false,
    expires_at          timestamptz,
    provider_account_id text,
    status              text        NOT NULL,  -- accepted, deferred, sending, sent, delivered, failed, suppressed
    reason              text        NOT NULL DEFAULT '',
    rule_id             text,
    not_before          timestamptz,
    attempts            int         NOT NULL DEFAULT 0,
    segments            int,
    provider_message_id text,
    sent_at             timestamptz,
    cap_reserved_at     timestamptz,  -- counts against frequency caps from this time (cleared if not sent)
    claimed_until       timestamptz,  -- a worker is processing it until then
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, message_id),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX messages_due ON messages (not_before) WHERE status = 'deferred';
CREATE INDEX messages_ledger ON messages (tenant_id, contact_id, cap_reserved_at) WHERE cap_reserved_at IS NOT NULL;
CREATE INDEX messages_contact ON messages (tenant_id, contact_id, created_at DESC, message_id);
CREATE INDEX messages_campaign ON messages (tenant_id, campaign_id, created_at DESC, message_id) WHERE campaign_id IS NOT NULL;

-- The status timeline of each message: every step with its time and reason.
CREATE TABLE message_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  text        NOT NULL,
    message_id uuid        NOT NULL,
    status     text        NOT NULL,
    reason     text        NOT NULL DEFAULT '',
    at         timestamptz NOT NULL
);
CREATE INDEX message_events_message ON message_events (tenant_id, message_id, id);
