-- One row per generated reply (issue 6): what was asked of which model, how it ended, what it cost.
-- Usage reports read this table, so it keeps the organization, user and agent config of the time.
CREATE TABLE completion_jobs (
    id                   text PRIMARY KEY,
    conversation_id      text NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id              text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id      text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_config_id      text REFERENCES agent_configs (id) ON DELETE SET NULL,
    provider             text NOT NULL,
    model                text NOT NULL,
    status               text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    user_message_id      text NOT NULL,
    assistant_message_id text,
    error                text,
    finish_reason        text,
    prompt_tokens        bigint NOT NULL DEFAULT 0,
    completion_tokens    bigint NOT NULL DEFAULT 0,
    -- the id of the job's last stream event, so a late re-attach can name it
    last_event_id        bigint NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL,
    finished_at          timestamptz
);
-- at most one reply is generated per conversation at a time
CREATE UNIQUE INDEX completion_jobs_one_running ON completion_jobs (conversation_id) WHERE status = 'running';
CREATE INDEX completion_jobs_org_created ON completion_jobs (organization_id, created_at);
CREATE INDEX completion_jobs_user_created ON completion_jobs (user_id, created_at);
