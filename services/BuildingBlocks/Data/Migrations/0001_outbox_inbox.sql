-- Transactional outbox: rows are written in the same transaction as the change they announce;
-- the relay publishes them (publisher confirms) and stamps published_at.
CREATE TABLE outbox_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   uuid        NOT NULL DEFAULT gen_random_uuid(),
    message_type text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_messages_unpublished ON outbox_messages (id) WHERE published_at IS NULL;

-- Inbox: a consumer records each message id it handled, in the same transaction as its effect,
-- so a redelivered message is recognised and skipped.
CREATE TABLE inbox_messages (
    consumer     text        NOT NULL,
    message_id   uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
