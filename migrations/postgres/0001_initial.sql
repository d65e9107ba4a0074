-- Tenant data is keyed by workspace_id first in every primary key and index,
-- so one workspace's rows sit together, every lookup is a prefix scan, and the
-- tables can later be partitioned or sharded by workspace without new keys.
--
-- Keys are COLLATE "C" so that ORDER BY key is byte order (the contract's
-- pagination order) and the primary key index serves it; distinct_id is "C"
-- too because only equality matters there and byte comparison is cheapest.

CREATE TABLE workspaces (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    client_attribute_writes boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);

CREATE TABLE api_keys (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('secret', 'public')),
    mode text NOT NULL CHECK (mode IN ('live', 'test')),
    hash bytea NOT NULL CHECK (length(hash) = 32),
    display_prefix text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    PRIMARY KEY (workspace_id, id)
);

-- The one index not led by workspace_id: a request arrives with nothing but
-- its key, and the key's hash is what tells us the workspace. SHA-256 of 128+
-- random bits cannot collide in practice, so the index is globally unique.
CREATE UNIQUE INDEX api_keys_hash_key ON api_keys (hash);

CREATE TABLE attribute_definitions (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    key text COLLATE "C" NOT NULL,
    attr_type text NOT NULL,
    config jsonb NOT NULL,
    display_name text,
    description text,
    archived boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, key)
);

CREATE TABLE persons (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    mode text NOT NULL CHECK (mode IN ('live', 'test')),
    distinct_id text COLLATE "C" NOT NULL,
    person_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, mode, distinct_id),
    -- The target of attribute_values' foreign key.
    UNIQUE (workspace_id, person_id)
);

CREATE TABLE attribute_values (
    workspace_id uuid NOT NULL,
    person_id uuid NOT NULL,
    attribute_key text COLLATE "C" NOT NULL,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, person_id, attribute_key),
    FOREIGN KEY (workspace_id, person_id) REFERENCES persons (workspace_id, person_id),
    -- A value can only exist for a declared attribute. Definitions are never
    -- deleted (only archived), so this never blocks anything legitimate, and
    -- it turns a caller's bug into a failed write instead of an orphan.
    FOREIGN KEY (workspace_id, attribute_key) REFERENCES attribute_definitions (workspace_id, key)
);
