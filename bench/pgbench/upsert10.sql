-- Ten rows of one person upserted by one statement, like SetAttributes.
\set p random(0, :pop - 1)
\set r random(0, 3)
INSERT INTO bench_raw_values (workspace_id, person_id, attribute_key, value, updated_at)
SELECT '00000000-0000-4000-8000-000000000001',
       ('00000000-0000-4000-8000-' || lpad(to_hex(:p::bigint), 12, '0'))::uuid,
       'a' || k, to_jsonb('s' || :r::int || '-' || k), now()
FROM generate_series(0, 9) AS k
ON CONFLICT (workspace_id, person_id, attribute_key)
DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
