-- A contact's orders are found by contact_id alone: contact ids are UUIDs (v4 or v7) the service
-- generates, so a contact's orders are a handful of index entries whatever the tenant, and the
-- tenant in the key only made every entry longer and every comparison a text comparison. Tenants
-- stay apart because every query on orders still filters on tenant_id (checked on the row).
-- Measured on COPY of 100k orders: 380 ms with the old index, 325 ms with this one, 200 ms with the
-- primary key alone. On a large existing table this rebuild holds a lock on orders while it runs.
DROP INDEX orders_contact;
CREATE INDEX orders_contact ON orders (contact_id, occurred_at DESC) WHERE contact_id IS NOT NULL;
