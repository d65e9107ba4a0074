-- Idempotency keys (AIP-155): the first response to each request_id, per
-- workspace and mode, kept 24 hours so that a retry returns it instead of
-- applying the request again. `fingerprint` is a hash of the RPC and its
-- request body, to refuse a request_id reused for another request. The
-- server deletes expired rows itself (by created_at).
CREATE TABLE requests (
    workspace_id BLOB NOT NULL REFERENCES workspaces (id),
    mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
    request_id BLOB NOT NULL,
    fingerprint BLOB NOT NULL,
    response TEXT NOT NULL CHECK (json_valid(response)),
    created_at TEXT NOT NULL,
    PRIMARY KEY (workspace_id, mode, request_id)
);

CREATE INDEX requests_created_at ON requests (created_at);
