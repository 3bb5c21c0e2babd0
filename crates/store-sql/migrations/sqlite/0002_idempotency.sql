-- Responses of POST requests sent with an Idempotency-Key, kept 24 h per API key.
CREATE TABLE idempotency_keys (
    api_key_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    content_type TEXT,
    body BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (api_key_id, key)
);
