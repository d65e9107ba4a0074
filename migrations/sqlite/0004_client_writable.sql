-- Section 11: whether public keys (browser writes) may write an attribute.
-- Existing attributes stay writable, as they were.
ALTER TABLE attribute_definitions
    ADD COLUMN client_writable INTEGER NOT NULL DEFAULT 1 CHECK (client_writable IN (0, 1));
