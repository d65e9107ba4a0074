-- The 10 rows of one person by primary-key prefix, like GetAttributes.
\set p random(0, :pop - 1)
SELECT attribute_key, value, updated_at
FROM bench_raw_values
WHERE workspace_id = '00000000-0000-4000-8000-000000000001'
  AND person_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:p::bigint), 12, '0'))::uuid
ORDER BY attribute_key;
