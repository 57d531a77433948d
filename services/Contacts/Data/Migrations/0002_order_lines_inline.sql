-- Line items live inside their order as a JSON array of {sku, name, category, quantity, unit_price}.
-- An order is written once and read whole (its status may change, its items never do), so a
-- separate table only cost a second B-tree entry per item: a million-row import spent most of its
-- time maintaining that index. The type is json, not jsonb: the items are stored as written (numbers
-- keep their exact decimal text) and never searched in place, and json input is about three times
-- cheaper to load than jsonb. Cast to jsonb to query inside them.
ALTER TABLE orders ADD COLUMN lines json NOT NULL DEFAULT '[]';
ALTER TABLE orders ALTER COLUMN lines SET COMPRESSION lz4;
-- The import that recorded the order (NULL when recorded through the API).
ALTER TABLE orders ADD COLUMN import_id uuid;

UPDATE orders o SET lines = l.lines::json
FROM (
    SELECT tenant_id, order_id,
           jsonb_agg(jsonb_build_object('sku', sku, 'name', name, 'category', category,
                                        'quantity', quantity, 'unit_price', unit_price) ORDER BY line_no) AS lines
    FROM order_lines GROUP BY tenant_id, order_id
) l
WHERE o.tenant_id = l.tenant_id AND o.order_id = l.order_id;

DROP TABLE order_lines;

