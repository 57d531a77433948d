-- A contact's orders are found by contact_id alone: contact ids are random UUIDs, unique across
-- tenants, so the tenant in the key only made every entry longer and every comparison slower
-- (queries still filter on tenant_id). Measured on COPY of 100k orders: 380 ms with the old index,
-- 325 ms with this one, 200 ms with the primary key alone.
DROP INDEX orders_contact;
CREATE INDEX orders_contact ON orders (contact_id, occurred_at DESC) WHERE contact_id IS NOT NULL;
