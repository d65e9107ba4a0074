-- Section 9: long-running operations (AIP-151), so far the purge of an
-- attribute. They are rows, not tasks in one process, so that a purge
-- survives a restart: the worker running one holds a lease (owner and
-- expiry, renewed with every batch) and any replica takes over an
-- unfinished operation whose lease has expired. Times of leases are
-- milliseconds since the epoch, compared the same way on both backends.
--
-- Purging deletes definitions, which 0001's comment on attribute_values
-- says never happens: a purge deletes every value of the key first, so the
-- foreign key still only ever refuses orphans.
CREATE TABLE operations (
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    id BLOB NOT NULL,
    attribute_key TEXT NOT NULL,
    values_deleted INTEGER NOT NULL DEFAULT 0,
    -- Batches delete values in person_id order: the next one starts after
    -- this person (NULL: from the start).
    resume_after BLOB,
    -- How many times a worker has taken the operation (a crash loop ends in
    -- failure rather than forever).
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner BLOB,
    lease_expires_ms INTEGER,
    done INTEGER NOT NULL DEFAULT 0,
    -- A failed operation's google.rpc.Status code and message.
    error_code INTEGER,
    error_message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    done_at TEXT,
    PRIMARY KEY (workspace_id, id)
);

-- At most one unfinished purge per attribute.
CREATE UNIQUE INDEX operations_running_key ON operations (workspace_id, attribute_key)
    WHERE NOT done;

-- What workers look for: unfinished operations, oldest first.
CREATE INDEX operations_unfinished ON operations (id) WHERE NOT done;

-- Set (with the operation's row, in one transaction) while a purge runs:
-- the attribute cannot be unarchived under it.
ALTER TABLE attribute_definitions ADD COLUMN purging INTEGER NOT NULL DEFAULT 0;
