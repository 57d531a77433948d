-- Campaigns: templates, campaigns, runs and their recipients, the outcomes Delivery reported, the
-- conversions attributed, and the lean projection templates are rendered from. Every table carries
-- tenant_id and is put under row-level security by the migrator. Nothing is read from another
-- service's database: the projection is fed by Contacts' and Segmentation's events.

-- ---- The workspace's defaults ----

CREATE TABLE campaign_settings (
    tenant_id         text        NOT NULL PRIMARY KEY,
    default_locale    text        NOT NULL DEFAULT 'en',
    default_time_zone text        NOT NULL DEFAULT 'UTC',
    updated_at        timestamptz NOT NULL
);

-- What an SMS segment costs, per destination calling code ('' = every other destination).
CREATE TABLE sms_prices (
    tenant_id         text          NOT NULL,
    country_prefix    text          NOT NULL,
    currency          text          NOT NULL,
    price_per_segment numeric(12,6) NOT NULL CHECK (price_per_segment >= 0),
    PRIMARY KEY (tenant_id, country_prefix)
);

-- ---- Templates ----

CREATE TABLE templates (
    tenant_id   text        NOT NULL,
    template_id uuid        NOT NULL,
    name        text        NOT NULL,
    channel     text        NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'kakao')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, template_id)
);

-- One content per locale. The parts (subject, html, text, sms, push title/body/data, kakao code and
-- variables) as the API gives them, each already parsed once on save.
CREATE TABLE template_contents (
    tenant_id   text  NOT NULL,
    template_id uuid  NOT NULL,
    locale      text  NOT NULL,
    content     jsonb NOT NULL,
    PRIMARY KEY (tenant_id, template_id, locale),
    FOREIGN KEY (tenant_id, template_id) REFERENCES templates ON DELETE CASCADE
);

-- ---- Campaigns ----

CREATE TABLE campaigns (
    tenant_id              text        NOT NULL,
    campaign_id            uuid        NOT NULL,
    name                   text        NOT NULL,
    status                 text        NOT NULL DEFAULT 'draft'
                           CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled', 'archived')),
    segment_ids            uuid[]      NOT NULL DEFAULT '{}',
    exclusion_segment_ids  uuid[]      NOT NULL DEFAULT '{}',
    channels               text[]      NOT NULL,                -- the first, then fallbacks in order
    fallback_templates     jsonb       NOT NULL DEFAULT '{}',   -- channel -> template id
    purpose                text        NOT NULL CHECK (purpose IN ('marketing', 'transactional')),
    category               text,
    template_id            uuid,
    data                   jsonb       NOT NULL DEFAULT '{}',   -- campaign.* in templates
    expires_at             timestamptz,
    -- Schedule: now | at | local_time | recurring.
    schedule_kind          text        NOT NULL DEFAULT 'now' CHECK (schedule_kind IN ('now', 'at', 'local_time', 'recurring')),
    send_at                timestamptz,                         -- at
    local_date             date,                                -- local_time
    local_time             time,                                -- local_time
    past_zone_policy       text        NOT NULL DEFAULT 'send_now' CHECK (past_zone_policy IN ('send_now', 'skip')),
    cron                   text,                                -- recurring
    time_zone              text,                                -- recurring
    schedule_ends_at       timestamptz,                         -- recurring
    next_run_at            timestamptz,                         -- when the scheduler creates the next run
    -- Experiments.
    holdout_share          double precision NOT NULL DEFAULT 0 CHECK (holdout_share >= 0 AND holdout_share <= 0.5),
    conversion_kind        text        CHECK (conversion_kind IN ('order', 'event')),
    conversion_event       text,
    conversion_window_days int         NOT NULL DEFAULT 7 CHECK (conversion_window_days BETWEEN 1 AND 90),
    last_run_id            uuid,
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id)
);
CREATE INDEX campaigns_due ON campaigns (next_run_at) WHERE next_run_at IS NOT NULL AND status = 'scheduled';

CREATE TABLE campaign_variants (
    tenant_id   text NOT NULL,
    campaign_id uuid NOT NULL,
    variant_id  text NOT NULL,
    name        text NOT NULL DEFAULT '',
    weight      int  NOT NULL CHECK (weight BETWEEN 1 AND 1000),
    template_id uuid NOT NULL,
    position    int  NOT NULL,
    PRIMARY KEY (tenant_id, campaign_id, variant_id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns ON DELETE CASCADE
);

-- ---- Runs: one per send (a recurring campaign has one per occurrence) ----

CREATE TABLE campaign_runs (
    tenant_id     text        NOT NULL,
    run_id        uuid        NOT NULL,
    campaign_id   uuid        NOT NULL,
    status        text        NOT NULL
                  CHECK (status IN ('pending', 'snapshotting', 'sending', 'paused', 'waiting', 'finished', 'cancelled', 'failed')),
    seed          bigint      NOT NULL,              -- variant and holdout hashing
    scheduled_for timestamptz NOT NULL,
    started_at    timestamptz,
    fanned_out_at timestamptz,                       -- every recipient handed to Delivery (or skipped)
    finished_at   timestamptz,                       -- every recipient has an outcome
    cancelled_at  timestamptz,
    error         text,
    audience      bigint      NOT NULL DEFAULT 0,    -- recipients snapshotted
    -- The durable cursor: the last contact handed to Delivery, in contact-id order.
    cursor        uuid,
    -- Who fans out: a worker holds the run until then (another takes over after a crash).
    claimed_until timestamptz,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, run_id),
    FOREIGN KEY (tenant_id, campaign_id) REFERENCES campaigns ON DELETE CASCADE
);
CREATE INDEX campaign_runs_by_campaign ON campaign_runs (tenant_id, campaign_id, created_at DESC);
CREATE INDEX campaign_runs_active ON campaign_runs (scheduled_for) WHERE status IN ('pending', 'snapshotting', 'sending', 'waiting');

-- One row per contact of a run's audience. Status: pending (not yet handed over), enqueued (a
-- DeliverMessage is in the outbox), then the outcome Delivery reported (sent, delivered, deferred,
-- suppressed, failed, cancelled), or holdout / skipped, which need none.
CREATE TABLE recipients (
    tenant_id       text        NOT NULL,
    run_id          uuid        NOT NULL,
    contact_id      uuid        NOT NULL,
    campaign_id     uuid        NOT NULL,
    variant_id      text,                             -- null for the holdout
    holdout         boolean     NOT NULL DEFAULT false,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'enqueued', 'sent', 'delivered', 'deferred', 'suppressed', 'failed', 'cancelled', 'holdout', 'skipped')),
    send_at         timestamptz,                      -- local-time schedules: when it is due in the contact's zone
    channel         text,                             -- the channel it was sent on
    reason          text,                             -- suppressed / failed / skipped: why
    rule_id         text,
    message_id      uuid,                             -- Delivery's, from the outcome
    enqueued_at     timestamptz,
    outcome_at      timestamptz,
    PRIMARY KEY (tenant_id, run_id, contact_id)
);
CREATE INDEX recipients_by_campaign_contact ON recipients (tenant_id, campaign_id, contact_id);

-- Every outcome Delivery reported for a run's message, as it came (a message may be deferred, then
-- sent, then delivered). Natural key: the message and the kind, so a redelivered event adds nothing.
CREATE TABLE outcomes (
    tenant_id   text        NOT NULL,
    run_id      uuid        NOT NULL,
    contact_id  uuid        NOT NULL,
    message_id  uuid        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('sent', 'delivered', 'deferred', 'suppressed', 'failed', 'opened', 'machine_opened', 'clicked')),
    channel     text        NOT NULL,
    reason      text,
    rule_id     text,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, message_id, kind)
);
CREATE INDEX outcomes_by_run ON outcomes (tenant_id, run_id, kind);

-- Conversions attributed to a run's recipient (or holdout contact): an order or a named event within
-- the goal's window after the message was sent (or the holdout contact assigned).
CREATE TABLE conversions (
    tenant_id    text          NOT NULL,
    source_id    text          NOT NULL,   -- order id or engagement event id
    campaign_id  uuid          NOT NULL,
    run_id       uuid          NOT NULL,
    contact_id   uuid          NOT NULL,
    variant_id   text,
    holdout      boolean       NOT NULL,
    revenue      numeric(18,4) NOT NULL DEFAULT 0,
    currency     text,
    occurred_at  timestamptz   NOT NULL,
    attributed_from timestamptz NOT NULL,  -- the send (or assignment) it is attributed to
    PRIMARY KEY (tenant_id, source_id, campaign_id)
);
CREATE INDEX conversions_by_run ON conversions (tenant_id, run_id);

-- ---- The template model: a lean projection of Contacts' and Segmentation's events ----

CREATE TABLE contacts (
    tenant_id       text        NOT NULL,
    contact_id      uuid        NOT NULL,
    external_id     text,
    locale          text,
    time_zone       text,
    attributes      jsonb       NOT NULL DEFAULT '{}',  -- typed attributes as Contacts stores them
    has_email       boolean     NOT NULL DEFAULT false,
    has_phone       boolean     NOT NULL DEFAULT false,
    push_tokens     int         NOT NULL DEFAULT 0,
    tier            text,
    tier_version_at timestamptz NOT NULL DEFAULT '-infinity',
    version_at      timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (tenant_id, contact_id)
);

CREATE TABLE erased_contacts (
    tenant_id  text        NOT NULL,
    contact_id uuid        NOT NULL,
    erased_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, contact_id)
);

-- Orders, by their natural key (a redelivered TransactionsRecorded changes nothing); the order facts
-- of the model (last order, totals, count, top category) and conversions are read from here.
CREATE TABLE orders (
    tenant_id   text          NOT NULL,
    order_id    text          NOT NULL,
    contact_id  uuid          NOT NULL,
    occurred_at timestamptz   NOT NULL,
    currency    text          NOT NULL,
    total       numeric(18,4) NOT NULL,
    status      text          NOT NULL,
    categories  text[]        NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX orders_by_contact ON orders (tenant_id, contact_id, occurred_at DESC);
