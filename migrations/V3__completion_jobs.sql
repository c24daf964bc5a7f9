-- One row per generated reply (issue 6): what was asked of which model, how it ended, what it cost.
-- Usage reports read this table, so it keeps the organization, user and agent config of the time.
CREATE TABLE completion_jobs (
    id                   TEXT PRIMARY KEY,
    conversation_id      TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id              TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id      TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_config_id      TEXT REFERENCES agent_configs (id) ON DELETE SET NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    user_message_id      TEXT NOT NULL,
    assistant_message_id TEXT,
    error                TEXT,
    finish_reason        TEXT,
    prompt_tokens        INTEGER NOT NULL DEFAULT 0,
    completion_tokens    INTEGER NOT NULL DEFAULT 0,
    -- the id of the job's last stream event, so a late re-attach can name it
    last_event_id        INTEGER NOT NULL DEFAULT 0,
    created_at           TEXT NOT NULL,
    finished_at          TEXT
);
-- at most one reply is generated per conversation at a time
CREATE UNIQUE INDEX completion_jobs_one_running ON completion_jobs (conversation_id) WHERE status = 'running';
CREATE INDEX completion_jobs_org_created ON completion_jobs (organization_id, created_at);
CREATE INDEX completion_jobs_user_created ON completion_jobs (user_id, created_at);
