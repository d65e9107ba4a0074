-- Every stored value carries an etag: a random id replaced on every change,
-- which `if_etag` preconditions compare and update operations use to write
-- only over the version they read (compare-and-set). Existing values get one
-- each; there is no default afterwards, so a write that forgot it fails.
ALTER TABLE attribute_values ADD COLUMN etag uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE attribute_values ALTER COLUMN etag DROP DEFAULT;
