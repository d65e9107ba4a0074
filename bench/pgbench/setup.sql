-- The scratch table of the raw PostgreSQL baselines: the shape of the
-- service's attribute_values (same columns, types, collation and primary
-- key), without its foreign keys, seeded with :pop persons x 10 values.
-- Person i's id is a UUID that encodes i, so the pgbench scripts can address
-- it from a random integer.
DROP TABLE IF EXISTS bench_raw_values;
CREATE TABLE bench_raw_values (
    workspace_id uuid NOT NULL,
    person_id uuid NOT NULL,
    attribute_key text COLLATE "C" NOT NULL,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, person_id, attribute_key)
);
INSERT INTO bench_raw_values
SELECT '00000000-0000-4000-8000-000000000001',
       ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
       'a' || k,
       to_jsonb('s' || k),
       now()
FROM generate_series(0, :pop - 1) AS i
CROSS JOIN LATERAL generate_series(0, 9 + 0 * i) AS k;
VACUUM ANALYZE bench_raw_values;
