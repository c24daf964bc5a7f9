-- API keys (SPEC §8, issue 14): scripts authenticate with `Authorization: Bearer cpk_…` instead of
-- a person's password. Only the SHA-256 of the key is stored (a key is 238 random bits, so a fast
-- hash is enough); `prefix` (the first characters) lets people tell their keys apart.
CREATE TABLE api_keys (
    id              text PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    prefix          text NOT NULL,
    secret_sha256   text NOT NULL UNIQUE,
    -- comma-separated permission names, each held by the creator when the key was made
    permissions     text NOT NULL,
    expires_at      timestamptz,
    last_used_at    timestamptz,
    created_at      timestamptz NOT NULL
);
CREATE INDEX api_keys_user ON api_keys (user_id, created_at DESC, id DESC);
CREATE INDEX api_keys_org ON api_keys (organization_id, created_at DESC, id DESC);
