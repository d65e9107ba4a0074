-- Section 11: identity verification and allowed origins, both off by default.
ALTER TABLE workspaces
    ADD COLUMN identity_verification text NOT NULL DEFAULT 'off'
        CHECK (identity_verification IN ('off', 'required'));
-- A JSON list of origin patterns; empty means any origin.
ALTER TABLE workspaces ADD COLUMN allowed_origins jsonb NOT NULL DEFAULT '[]';

-- The secret itself, not a hash: verifying HMAC-SHA256(secret, distinct_id)
-- needs it (see app::identity for why it is stored as it is).
CREATE TABLE identity_secrets (
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    id uuid NOT NULL,
    secret text NOT NULL,
    display_prefix text NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz,
    PRIMARY KEY (workspace_id, id)
);
