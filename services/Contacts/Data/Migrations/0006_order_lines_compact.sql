-- Line items are stored as positional arrays, [[sku, name, category, quantity, unit_price], ...],
-- not as objects repeating their five key names on every item: that halves what a line costs to
-- write (an import of a million line items spent most of its database time on the bytes of
-- `lines`). Query them by name through order_lines(lines).
UPDATE orders SET lines = (
    SELECT coalesce(json_agg(json_build_array(e->'sku', e->'name', e->'category', e->'quantity', e->'unit_price')), '[]'::json)
    FROM json_array_elements(lines) AS e)
WHERE json_array_length(lines) > 0;

COMMENT ON COLUMN orders.lines IS 'Line items: a JSON array of [sku, name, category, quantity, unit_price]; read by name with order_lines(lines).';

CREATE FUNCTION order_lines(lines json)
    RETURNS TABLE (line_no int, sku text, name text, category text, quantity numeric, unit_price numeric)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT i::int, e->>0, e->>1, e->>2, (e->>3)::numeric, (e->>4)::numeric
        FROM json_array_elements(lines) WITH ORDINALITY AS t(e, i)
    $$;
