-- Message ids are globally unique (UUIDv7): batches are claimed and updated by id.
CREATE UNIQUE INDEX IF NOT EXISTS messages_id ON messages (message_id);

-- Delivery receipts find their message by the provider's id.
CREATE INDEX IF NOT EXISTS messages_provider_id ON messages (tenant_id, provider_message_id) WHERE provider_message_id IS NOT NULL;
