CREATE TABLE items (id bigint PRIMARY KEY, owner uuid, at timestamptz NOT NULL DEFAULT now());
INSERT INTO items (id, owner) SELECT g, gen_random_uuid() FROM generate_series(1, 1000) g;
