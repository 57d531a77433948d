-- A batch event's payload (an import writes ~100 KB per TransactionsRecorded) is TOASTed; changing
-- the type in 0003/0004 had reset its compression to pglz, which cost the import more than writing
-- the bytes. Payloads live only until the relay has published them: store them uncompressed.
ALTER TABLE outbox_messages ALTER COLUMN payload SET STORAGE EXTERNAL;
