-- migrate: outside a transaction
-- Each statement can run again.
DROP INDEX CONCURRENTLY IF EXISTS items_owner_new;
CREATE INDEX CONCURRENTLY items_owner_new ON items (owner, at DESC);
ALTER INDEX items_owner_new RENAME TO items_owner;
