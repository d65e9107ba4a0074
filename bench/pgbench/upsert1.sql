-- One single-row upsert per transaction (autocommit), like SetAttribute.
\set p random(0, :pop - 1)
\set k random(0, 9)
INSERT INTO bench_raw_values (workspace_id, person_id, attribute_key, value, updated_at)
VALUES ('00000000-0000-4000-8000-000000000001',
        ('00000000-0000-4000-8000-' || lpad(to_hex(:p::bigint), 12, '0'))::uuid,
        'a' || :k::int, to_jsonb('v' || :k::int), now())
ON CONFLICT (workspace_id, person_id, attribute_key)
DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at;
