-- Payloads are written once and read back as text by the relay; json only checks them, jsonb also
-- re-encodes them, which cost a bulk import a noticeable share of the database's time.
ALTER TABLE outbox_messages ALTER COLUMN payload TYPE json USING payload::json;
