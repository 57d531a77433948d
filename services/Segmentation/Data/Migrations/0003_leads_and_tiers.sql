-- Lead scoring and membership tiers: each tenant's settings, and per contact the result the refresh keeps.
-- A lead score is a function of the projections and the rules at an evaluation time (Features/Leads), so
-- there is no ledger of awarded points to drift: lead_scores holds the last evaluation and whether the
-- contact is qualified, which is what LeadQualified is published from.

CREATE TABLE lead_scoring_settings (
    tenant_id      text             PRIMARY KEY,
    mql_threshold  double precision NOT NULL,
    half_life_days double precision NOT NULL,   -- 0 = points never decay
    updated_at     timestamptz      NOT NULL
);

-- One row per rule. `definition` is the rule as its proto JSON (what GetLeadScoringRules returns); the
-- other columns are what the scoring SQL joins on.
CREATE TABLE lead_scoring_rules (
    tenant_id          text             NOT NULL,
    rule_id            text             NOT NULL,
    position           int              NOT NULL,
    definition         jsonb            NOT NULL,
    kind               text             NOT NULL,   -- engagement, custom_event, order, attribute
    event_type         text,                        -- engagement.type it counts (custom for custom events)
    event_name         text,                        -- custom events: engagement.name
    match              jsonb            NOT NULL DEFAULT '{}', -- events: properties contained; attribute: {name: value}
    points             double precision NOT NULL,
    max_points_per_day double precision NOT NULL DEFAULT 0,  -- 0 = no cap; days are UTC days
    PRIMARY KEY (tenant_id, rule_id)
);

CREATE TABLE lead_scores (
    tenant_id    text             NOT NULL,
    contact_id   uuid             NOT NULL,
    score        double precision NOT NULL,
    qualified    boolean          NOT NULL,
    qualified_at timestamptz,                   -- since when qualified; NULL while not
    computed_at  timestamptz      NOT NULL,     -- the evaluation time of score
    decays       boolean          NOT NULL DEFAULT false, -- has points that shrink as time passes
    PRIMARY KEY (tenant_id, contact_id)
);
CREATE INDEX lead_scores_decaying ON lead_scores (tenant_id) WHERE decays;

CREATE TABLE tier_settings (
    tenant_id   text        PRIMARY KEY,
    measure     text        NOT NULL,           -- spend, order_count
    window_days int         NOT NULL,
    names       text[]      NOT NULL,           -- ascending by min_values
    min_values  numeric[]   NOT NULL,
    updated_at  timestamptz NOT NULL,
    checked_at  timestamptz NOT NULL            -- orders that left the window up to checked_at - window are accounted for
);

-- A row for every contact with a completed order in the window or in a tier; tier NULL is below the lowest.
CREATE TABLE contact_tiers (
    tenant_id  text          NOT NULL,
    contact_id uuid          NOT NULL,
    tier       text,
    value      numeric(20,4) NOT NULL,          -- the spend or order count that placed them
    since      timestamptz   NOT NULL,          -- when they entered this tier
    PRIMARY KEY (tenant_id, contact_id)
);
