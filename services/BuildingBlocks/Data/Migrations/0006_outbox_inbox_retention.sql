-- Published outbox rows and processed inbox rows are deleted after a retention period
-- (OutboxRetention); these indexes let it find the oldest in small batches.
CREATE INDEX outbox_messages_published ON outbox_messages (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX inbox_messages_processed ON inbox_messages (processed_at);
