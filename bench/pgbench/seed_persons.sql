-- Adds persons <prefix>:from .. <prefix>(:to - 1), 10 values each (a0..a9, as
-- `setup` writes them), straight into the service's tables of the only
-- workspace, mode live. Seeding a million persons through the API would take
-- longer than the whole benchmark.
--
-- Foreign-key triggers are skipped for the bulk load (session_replication_role
-- = replica needs a superuser): the rows are consistent by construction.
-- Person ids encode i after a fixed UUIDv7-like prefix from 2024, so they
-- sort before the ids the service makes and index inserts append.
\set ON_ERROR_STOP on
SET session_replication_role = replica;
BEGIN;
INSERT INTO persons (workspace_id, mode, distinct_id, person_id, created_at)
SELECT w.id, 'live', :'prefix' || i,
       ('018f0000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, now()
FROM (SELECT id FROM workspaces ORDER BY created_at LIMIT 1) AS w
CROSS JOIN generate_series(:from, :to - 1) AS i;
INSERT INTO attribute_values (workspace_id, person_id, attribute_key, value, updated_at, etag)
SELECT w.id, ('018f0000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
       'a' || k, to_jsonb('s' || k), now(), gen_random_uuid()
FROM (SELECT id FROM workspaces ORDER BY created_at LIMIT 1) AS w
CROSS JOIN generate_series(:from, :to - 1) AS i
CROSS JOIN LATERAL generate_series(0, 9 + 0 * i) AS k;
COMMIT;
VACUUM ANALYZE persons;
VACUUM ANALYZE attribute_values;
