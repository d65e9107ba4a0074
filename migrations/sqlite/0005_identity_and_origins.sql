-- Section 11: identity verification and allowed origins, both off by default.
ALTER TABLE workspaces
    ADD COLUMN identity_verification TEXT NOT NULL DEFAULT 'off'
        CHECK (identity_verification IN ('off', 'required'));
-- A JSON list of origin patterns; empty means any origin.
ALTER TABLE workspaces
    ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(allowed_origins));

-- The secret itself, not a hash: verifying HMAC-SHA256(secret, distinct_id)
-- needs it (see app::identity for why it is stored as it is).
CREATE TABLE identity_secrets (
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    id BLOB NOT NULL,
    secret TEXT NOT NULL,
    display_prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    PRIMARY KEY (workspace_id, id)
);
