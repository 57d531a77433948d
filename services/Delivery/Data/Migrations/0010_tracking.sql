-- What comes back from sent messages (opens, clicks, unsubscribes, delivery receipts, bounces, complaints), one
-- row per observation and its dedupe key (open:<message>, click:<message>:<link>, bounce:<message>, ...): a
-- provider repeating itself, a second click on the same link, a replayed callback all hit the key and record
-- nothing new. A row written is an EngagementObserved in the outbox, in the same transaction.
CREATE TABLE engagement_observations (
    tenant_id       text NOT NULL,
    observation_key text NOT NULL,
    message_id      uuid NOT NULL,
    contact_id      uuid NOT NULL,
    type            text NOT NULL,      -- delivered, opened, machine_opened, clicked, bounced, complained, unsubscribed
    properties      jsonb NOT NULL DEFAULT '{}',
    occurred_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, observation_key)
);
CREATE INDEX engagement_observations_message ON engagement_observations (tenant_id, message_id);

-- A workspace may turn open and click tracking off; the postal address goes into Korean advertising email's footer.
ALTER TABLE delivery_settings ADD COLUMN tracking_enabled boolean NOT NULL DEFAULT true;
ALTER TABLE delivery_settings ADD COLUMN postal_address text NOT NULL DEFAULT '';

-- The unsubscribe page speaks the contact's language.
ALTER TABLE contact_channels ADD COLUMN locale text;
