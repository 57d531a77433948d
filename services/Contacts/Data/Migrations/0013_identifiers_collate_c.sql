-- Identifiers compare byte by byte (COLLATE "C"), not by the database's locale: tenant ids, order ids
-- and customer ids are keys, never text a person reads in dictionary order. Under a locale every
-- comparison in their B-trees goes through strcoll (copying both strings to terminate them): in a
-- million-line import (primary-key inserts and probes of orders and contacts) about 8% of the
-- database's CPU went to that locale handling, even under C.UTF-8; under "C" it is a memcmp, and under
-- a real locale (en_US.UTF-8, ICU) the saving is larger. Ordering by them (ListContacts by external_id, orders by order_id within a time) is
-- byte order, which for UTF-8 is code-point order: what a C.UTF-8 database already gave.
--
-- Every tenant_id of the schema changes together: a join on tenant_id between a "C" column and a
-- default one compares in "C", and the default-collation index could not serve it. New tables declare
-- `tenant_id text COLLATE "C"`.
--
-- The heap is not rewritten; each index on a changed column is rebuilt (under this transaction's lock on
-- its table: about a second per 100,000 orders). A policy depends on the column it reads, so the tenant
-- policies are dropped here and created again by the migrator right after (RowLevelSecurity); until
-- then the runtime role sees no rows of these tables.
DROP POLICY IF EXISTS tenant_isolation ON workspaces;
DROP POLICY IF EXISTS tenant_isolation ON contacts;
DROP POLICY IF EXISTS tenant_isolation ON suppressions;
DROP POLICY IF EXISTS tenant_isolation ON consent_history;
DROP POLICY IF EXISTS tenant_isolation ON consents;
DROP POLICY IF EXISTS tenant_isolation ON push_tokens;
DROP POLICY IF EXISTS tenant_isolation ON orders;
DROP POLICY IF EXISTS tenant_isolation ON engagement_events;
DROP POLICY IF EXISTS tenant_isolation ON imports;
DROP POLICY IF EXISTS tenant_isolation ON import_errors;
DROP POLICY IF EXISTS tenant_isolation ON api_keys;

ALTER TABLE workspaces ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE contacts ALTER COLUMN tenant_id TYPE text COLLATE "C", ALTER COLUMN external_id TYPE text COLLATE "C";
ALTER TABLE suppressions ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE consent_history ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE consents ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE push_tokens ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE orders ALTER COLUMN tenant_id TYPE text COLLATE "C", ALTER COLUMN order_id TYPE text COLLATE "C";
ALTER TABLE engagement_events ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE imports ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE import_errors ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE api_keys ALTER COLUMN tenant_id TYPE text COLLATE "C";
