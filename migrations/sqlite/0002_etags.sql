-- Every stored value carries an etag: a random id replaced on every change,
-- which `if_etag` preconditions compare. SQLite cannot add a column with a
-- random default, so existing values get theirs in a second step.
ALTER TABLE attribute_values ADD COLUMN etag BLOB NOT NULL DEFAULT x'';
UPDATE attribute_values SET etag = randomblob(16);
