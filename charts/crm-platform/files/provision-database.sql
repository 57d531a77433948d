-- Makes one service's database and its two roles (postgres.provisioning in values.yaml); run by the
-- service's migration Job before its migrations, as an administrator (a superuser, or a role with
-- CREATEDB and CREATEROLE), on every install and upgrade, so every statement is safe to run again.
--
--   psql -X -v ON_ERROR_STOP=1 -v database=crm_contacts -v owner=crm_contacts_owner -v runtime=crm_contacts \
--        -f provision-database.sql "$ADMIN_URI"     (passwords in CRM_OWNER_PASSWORD, CRM_RUNTIME_PASSWORD)
--
-- owner    owns the database, its schema and tables; the migrations run as it.
-- runtime  the service's login: owns nothing, may read and write the tables, so row-level security
--          applies to it. Neither may bypass row-level security or is a superuser.
-- Passwords come from the environment (\getenv, psql 15+), never from the command line, and reach SQL
-- only as literals quoted by format('%L'): any character is safe in them.

\set QUIET on
\getenv owner_password CRM_OWNER_PASSWORD
\getenv runtime_password CRM_RUNTIME_PASSWORD
\if :{?owner_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'CRM_OWNER_PASSWORD is not set'; END $$;
\endif
\if :{?runtime_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'CRM_RUNTIME_PASSWORD is not set'; END $$;
\endif

-- A DO block cannot see psql variables: they reach it as settings of this session.
SET crm.owner = :'owner';
SET crm.runtime = :'runtime';
SET crm.owner_password = :'owner_password';
SET crm.runtime_password = :'runtime_password';

DO $$
DECLARE
    role_name text;
    role_password text;
    existing pg_roles%ROWTYPE;
BEGIN
    FOR role_name, role_password IN
        VALUES (current_setting('crm.owner'), current_setting('crm.owner_password')),
               (current_setting('crm.runtime'), current_setting('crm.runtime_password'))
    LOOP
        SELECT * INTO existing FROM pg_roles WHERE rolname = role_name;
        IF NOT FOUND THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
                           role_name, role_password);
        ELSE
            -- The password the chart holds wins (it is what the pods are given). Attributes are changed
            -- only where they are wrong: changing SUPERUSER or BYPASSRLS at all needs a superuser, and
            -- an administrator that is not one then fails here rather than leave such a role in use.
            EXECUTE format('ALTER ROLE %I LOGIN NOCREATEDB NOCREATEROLE PASSWORD %L', role_name, role_password);
            IF existing.rolsuper THEN EXECUTE format('ALTER ROLE %I NOSUPERUSER', role_name); END IF;
            IF existing.rolbypassrls THEN EXECUTE format('ALTER ROLE %I NOBYPASSRLS', role_name); END IF;
            IF existing.rolreplication THEN EXECUTE format('ALTER ROLE %I NOREPLICATION', role_name); END IF;
        END IF;
    END LOOP;
    -- An administrator that is not a superuser must be a member of the owner to give it a database.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, current_setting('crm.owner'), 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', current_setting('crm.owner'), current_user);
    END IF;
END
$$;

RESET crm.owner_password;
RESET crm.runtime_password;

-- CREATE DATABASE cannot run in a DO block (nor in any transaction): \gexec runs it when it is missing.
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
-- A database made before (e.g. by a superuser, as chart 0.1.0 expected) is handed to the owner.
ALTER DATABASE :"database" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"database" TO :"runtime";

\connect :"database"
SET crm.owner = :'owner';
ALTER SCHEMA public OWNER TO :"owner";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"runtime";

-- Tables, sequences and views that another role made (migrations run as a superuser before) go to the owner.
DO $$
DECLARE
    object record;
BEGIN
    FOR object IN
        SELECT c.relname, CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
          AND pg_get_userbyid(c.relowner) <> current_setting('crm.owner')
          -- a sequence owned by a column moves with its table
          AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s public.%I OWNER TO %I', object.kind, object.relname, current_setting('crm.owner'));
    END LOOP;
END
$$;

-- What the login role may do, on what exists and on what the owner's migrations make later.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"runtime";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO :"runtime";
