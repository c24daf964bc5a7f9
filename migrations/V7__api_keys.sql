-- API keys (SPEC §8, issue 14): scripts authenticate with `Authorization: Bearer cpk_…` instead of
-- a person's password. Only the SHA-256 of the key is stored (a key is 238 random bits, so a fast
-- hash is enough); `prefix` (the first characters) lets people tell their keys apart.
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    secret_sha256   TEXT NOT NULL UNIQUE,
    -- comma-separated permission names, each held by the creator when the key was made
    permissions     TEXT NOT NULL,
    expires_at      TEXT,
    last_used_at    TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX api_keys_user ON api_keys (user_id, created_at DESC, id DESC);
CREATE INDEX api_keys_org ON api_keys (organization_id, created_at DESC, id DESC);
