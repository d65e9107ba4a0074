-- Tenant data is keyed by workspace_id first in every primary key and index,
-- so one workspace's rows sit together and every lookup is a prefix scan.
--
-- Text columns use SQLite's default BINARY collation, which is byte order: the
-- contract's order for attribute keys. Ids are 16-byte UUID blobs, times are
-- RFC 3339 text, JSON is text checked by json_valid.

CREATE TABLE workspaces (
    id BLOB PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    client_attribute_writes INTEGER NOT NULL DEFAULT 0 CHECK (client_attribute_writes IN (0, 1)),
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    id BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('secret', 'public')),
    mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    display_prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    PRIMARY KEY (workspace_id, id)
);

-- The one index not led by workspace_id: a request arrives with nothing but
-- its key, and the key's hash is what tells us the workspace.
CREATE UNIQUE INDEX api_keys_hash_key ON api_keys (hash);

CREATE TABLE attribute_definitions (
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    key TEXT NOT NULL,
    attr_type TEXT NOT NULL,
    config TEXT NOT NULL CHECK (json_valid(config)),
    display_name TEXT,
    description TEXT,
    archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (workspace_id, key)
);

CREATE TABLE persons (
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    distinct_id TEXT NOT NULL,
    person_id BLOB NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (workspace_id, mode, distinct_id),
    -- The target of attribute_values' foreign key.
    UNIQUE (workspace_id, person_id)
);

CREATE TABLE attribute_values (
    workspace_id BLOB NOT NULL,
    person_id BLOB NOT NULL,
    attribute_key TEXT NOT NULL,
    value TEXT NOT NULL CHECK (json_valid(value)),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (workspace_id, person_id, attribute_key),
    FOREIGN KEY (workspace_id, person_id) REFERENCES persons (workspace_id, person_id),
    -- A value can only exist for a declared attribute. Definitions are never
    -- deleted (only archived), so this never blocks anything legitimate, and
    -- it turns a caller's bug into a failed write instead of an orphan.
    FOREIGN KEY (workspace_id, attribute_key) REFERENCES attribute_definitions (workspace_id, key)
);
