-- The transaction import's bulk path (TransactionImport.CopyOrdersAsync). PostgreSQL refuses COPY FROM
-- into a table whose row-level security applies to the role, so the import either COPYs into a
-- staging table and moves the rows with INSERT … SELECT (a second write of every order), or COPYs
-- straight into orders as crm_bulk_orders: a role that cannot log in, bypasses row-level security
-- and holds INSERT on orders and nothing else (it can neither read, change nor delete a row of any
-- table). The service's role is made a member of it (RowLevelSecurity grants every crm_bulk_ role to
-- the runtime role) and switches to it with SET LOCAL ROLE for the COPY alone; the import writes
-- every row's tenant_id itself, from the tenant of its own transaction.
--
-- Creating a BYPASSRLS role needs a superuser (PostgreSQL 16: a CREATEROLE role that has BYPASSRLS
-- itself). A migrator without that right skips it, and the import keeps the staging path; an
-- operator may create the role beforehand (CREATE ROLE crm_bulk_orders NOLOGIN BYPASSRLS, granted to
-- the migrations' role WITH ADMIN OPTION), and the next migration run grants it INSERT.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'crm_bulk_orders')
       AND (SELECT rolsuper OR (rolcreaterole AND rolbypassrls AND current_setting('server_version_num')::int >= 160000)
            FROM pg_roles WHERE rolname = current_user) THEN
        CREATE ROLE crm_bulk_orders NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'crm_bulk_orders') THEN
        GRANT USAGE ON SCHEMA public TO crm_bulk_orders;
        GRANT INSERT ON orders TO crm_bulk_orders;
    END IF;
END
$$;
