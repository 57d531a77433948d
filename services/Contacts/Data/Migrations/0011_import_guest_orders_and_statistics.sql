-- Orders without a customer id (guest orders) are counted apart: orders_created counts every order
-- an import created, guest_orders_created the part of them that has no contact.
ALTER TABLE imports ADD COLUMN guest_orders_created bigint NOT NULL DEFAULT 0;

-- After a bulk load the planner's statistics still describe the table as it was (a reporting query
-- on orders went from under a second to 27 s right after a large import). An import that grew a
-- table by more than a tenth (and by at least 10,000 rows) analyses it once it has committed.
-- ANALYZE needs the table's owner, and the service connects as a role that does not own the
-- tables, so it goes through this function, which runs as its owner (the migrations' role) and
-- analyses only the bulk-loaded tables.
CREATE FUNCTION refresh_statistics(tbl text, added bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
    BEGIN
        IF tbl NOT IN ('orders', 'contacts') THEN
            RAISE EXCEPTION 'refresh_statistics: % is not a bulk-loaded table', tbl;
        END IF;
        IF added < 10000 OR added <= 0.1 * greatest((SELECT reltuples FROM pg_class WHERE oid = tbl::regclass), 0) THEN
            RETURN false;
        END IF;
        EXECUTE format('ANALYZE %I', tbl);
        RETURN true;
    END
    $$;
