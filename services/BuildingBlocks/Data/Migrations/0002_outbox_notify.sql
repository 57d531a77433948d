-- Wakes the outbox relay when outbox rows commit (NOTIFY is delivered at commit), so it need not
-- poll: polling walked the index entries of every uncommitted row of a long import, five times a second.
CREATE FUNCTION outbox_messages_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_messages', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_messages_notify AFTER INSERT ON outbox_messages
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_messages_notify();

-- Batched events are large; lz4 compresses them several times faster than the default pglz.
ALTER TABLE outbox_messages ALTER COLUMN payload SET COMPRESSION lz4;
